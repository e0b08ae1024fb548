"""Every speech provider in one table. A provider is its module under provider_specs/ (its
config section and declaration), its implementation under providers/, and one line here.

The config's schema, validation and warnings, the endpoint's info, the registry and the
credentials read this table; nothing else names a provider.
"""

from __future__ import annotations

from .provider_specs import azure, dashscope, espeak
from .provider_specs.spec import ProviderSpec, Role

PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec for spec in (dashscope.SPEC, azure.SPEC, espeak.SPEC)
}


def names_for(role: Role) -> tuple[str, ...]:
    """The providers that can serve ``role``."""
    return tuple(name for name, spec in PROVIDERS.items() if getattr(spec, role) is not None)
