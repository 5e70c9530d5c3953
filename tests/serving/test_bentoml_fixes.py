"""The narrow BentoML adjustments of :mod:`kuberec.serving.bentoml_fixes` that need no server."""

from __future__ import annotations

import bentoml
from pydantic import Field

from kuberec.serving import bentoml_fixes


@bentoml.service(name="fixes-probe")
class Probe:
    @bentoml.api
    def add(self, a: int, b: int = Field(2, description="a Field default")) -> int:
        return a + b


def test_an_endpoints_local_caller_is_built_once_per_instance_and_keeps_defaults() -> None:
    bentoml_fixes.apply()
    probe = Probe.inner()
    first, again = Probe.inner.add.__get__(probe, Probe.inner), probe.add
    assert first.local is again.local  # not rebuilt per request
    assert first.local(a=1) == 3 and first.local(a=1, b=5) == 6
    other = Probe.inner()
    assert other.add.local is not first.local  # bound to its own instance
