"""Hardware profiles (one YAML per device), alias resolution and device-state probes."""

from compress.hardware.profile import (
    DeviceInfo,
    HardwareProfile,
    devices,
    get_profile,
    load_profiles,
)

__all__ = ["DeviceInfo", "HardwareProfile", "devices", "get_profile", "load_profiles"]
