"""Korean text for the messages a run records in English, looked up by their id.

A validity warning is stored with an id (its ``code``), an English message and an English
fix; the Korean research log must not copy the English, so it shows the Korean title and fix
for the id. An id without a translation is shown by id only, with a pointer to the report.
"""

from __future__ import annotations

WARNINGS_KO: dict[str, tuple[str, str]] = {
    "cpu_governor": ("CPU 주파수 조절기가 성능 모드가 아니어서 클럭이 부하를 따라 변함",
                     "측정 전에 CPU 주파수 조절기를 성능 모드로 설정"),
    "cuda_device_order": ("GPU가 여러 개인데 장치 번호 순서가 버스 순서로 고정되지 않아 기록된 GPU와 측정한 GPU가 다를 수 있음",
                          "장치 순서를 버스 순서로 고정한 뒤 재측정"),
    "git_dirty": ("커밋되지 않은 변경이 있어 결과가 기록된 커밋의 것이 아님", "변경을 커밋한 뒤 측정"),
    "gpu_other_process": ("측정 중 다른 프로세스가 같은 GPU를 사용함", "GPU를 단독으로 쓸 수 있을 때 재측정"),
    "gpu_throttle": ("측정 중 GPU 클럭이 제한됨(발열 또는 전력)", "냉각과 전력 상태를 점검한 뒤 재측정"),
    "clock_change": ("측정 중 GPU 클럭이 크게 변함", "클럭을 고정하거나 GPU가 안정된 뒤 재측정"),
    "high_cv": ("반복 사이의 지연 시간 변동이 10%를 넘는 케이스가 있음",
                "반복 횟수 또는 워밍업을 늘리고 측정 중 다른 작업을 멈춤"),
    "too_few_samples": ("반복 횟수가 적어 상위 백분위수(p99 등)를 계산하지 못함",
                        "꼬리 지연이 중요한 경우 반복 횟수를 100회 이상으로 설정"),
    "nvml_query_failed": ("측정 중 일부 GPU 상태 조회가 실패하여 해당 지표가 비어 있음",
                          "GPU 조회 권한과 드라이버 및 관리 라이브러리 버전을 점검"),
    "util_on_cpu": ("GPU를 사용할 수 없어 활용률을 CPU에서 측정함", "GPU 관리 라이브러리를 설치하고 작업 프로세스가 GPU를 보게 함"),
    "util_source_change": ("측정 중 GPU 활용률의 측정 방식이 바뀜", "같은 측정 방식의 케이스끼리만 비교하고 재측정"),
    "quality_unavailable": ("일부 케이스의 출력 품질을 단일 처리 결과와 비교하지 못함", "단일 처리가 성공하는 조건에서 품질 기준을 다시 측정"),
    "busy_machine": ("측정 중 다른 작업이 장치를 사용함", "장치가 한가할 때 재측정"),
    "device_mem_blank": ("장치 전체 메모리(device_mem_bytes)를 읽지 못해 비어 있음; 할당자 기준 최대 메모리는 측정됨",
                         "컨테이너를 호스트의 프로세스 이름공간으로 실행하여 GPU 관리 라이브러리가 작업 프로세스를 보게 함"),
    "nonfinite_output": ("일부 케이스의 출력에 NaN 또는 무한대 값이 있어 품질이 실패로 처리됨(임계값 추천에서 제외)",
                         "해당 값을 만드는 단계를 찾아 수정(길이 0인 청크로 나누기, 넘치는 자료형 등)"),
    "mixed_devices": ("같은 클립 길이의 모드들이 서로 다른 작업자 또는 장치에서 측정되어 모드 비교에 장치 차이가 섞임",
                      "해당 클립 길이를 다시 측정하여 한 작업자에서 실행되게 하거나 한 장치에서 측정한 결과끼리 비교"),
}
FAILURE_KINDS_KO = {"oom": "메모리 부족", "error": "오류", "timeout": "시간 초과", "crash": "비정상 종료"}
DEVICE_KO = {"cpu": "CPU", "cuda": "GPU", "auto": "자동"}


def warning_title_ko(code: str) -> str:
    found = WARNINGS_KO.get(code)
    return found[0] if found else f"경고 {code} (보고서 부록 참조)"


def warning_fix_ko(code: str) -> str:
    found = WARNINGS_KO.get(code)
    return found[1] if found else "보고서 부록의 조치 참조"


def failure_kind_ko(kind: str) -> str:
    return FAILURE_KINDS_KO.get(kind, kind)
