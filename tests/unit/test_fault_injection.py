import numpy as np
import pytest

from ds2ir.errors import ConfigError
from ds2ir.host import launch
from ds2ir.model import fault_injection


def test_no_fault_unless_asked(monkeypatch):
    monkeypatch.delenv(fault_injection.ENV, raising=False)
    features = np.ones((2, 3))
    assert fault_injection.requested() is None and fault_injection.corrupt_features(features) is features
    assert not fault_injection.swaps_state()


def test_an_unknown_fault_is_refused_with_the_known_ones(monkeypatch):
    monkeypatch.setenv(fault_injection.ENV, "everything")
    with pytest.raises(ConfigError, match="weight, bias, state, features"):
        fault_injection.requested()


def test_feature_fault_moves_the_features_by_one_percent(monkeypatch):
    monkeypatch.setenv(fault_injection.ENV, "features")
    np.testing.assert_allclose(fault_injection.corrupt_features(np.full(3, 10.0)), 10.1)


def test_stage_containers_get_the_forwarded_variables_that_are_set(monkeypatch):
    for key in launch.FORWARDED_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    monkeypatch.setenv(fault_injection.ENV, "")
    assert launch.forwarded_environment() == {"ONEDNN_MAX_CPU_ISA": "SSE41"}
