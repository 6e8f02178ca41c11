"""The schedulers of mindone.diffusers (imported lazily, as `diffusers.schedulers`)."""

from ..._lazy import lazy_exports

_import_structure = {
    "scheduling_utils": ["SchedulerMixin"],
    "scheduling_flow_match_euler_discrete": ["FlowMatchEulerDiscreteScheduler"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _import_structure)
