"""Memory readings for a cell: device-wide used memory (cudaMemGetInfo) and the process's peak RSS."""

from __future__ import annotations

from typing import Any


def _cudart() -> Any:
    from ingan.runtime.cuda import import_cudart

    return import_cudart()


def device_used_bytes() -> int | None:
    """Device-wide used memory (total - free) from cudaMemGetInfo, or None without cuda-python/GPU."""
    cudart = _cudart()
    if cudart is None:
        return None
    try:
        err, free, total = cudart.cudaMemGetInfo()
    except Exception:  # noqa: BLE001
        return None
    return int(total) - int(free) if int(err) == 0 else None


def device_growth(baseline: int | None, unavailable: str) -> dict[str, Any]:
    """The `memory` fields of a cell measured with cudaMemGetInfo: used now minus `baseline`
    (read before the model was loaded); `unavailable` says why there is no number."""
    used = device_used_bytes()
    if used is None or baseline is None:
        return {"device_peak_mib": None, "device_method": f"unavailable ({unavailable})"}
    return {"device_peak_mib": round(max(used - baseline, 0) / 2**20, 1),
            "device_method": "cudaMemGetInfo: device-wide used memory after the run minus before loading"}


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_host_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux `clear_refs` 5); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def host_peak_mib(reset_ok: bool) -> tuple[float | None, str]:
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kib / 1024, 1), "ru_maxrss (process lifetime peak)"
    return round(kib / 1024, 1), "VmHWM since the cell started" if reset_ok else "VmHWM (process lifetime peak)"
