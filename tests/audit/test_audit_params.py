"""The auditing params sections validate, and bad values fail before any work, naming the key."""

from __future__ import annotations

import pytest

from flows.papers import discover
from tasks.papers import mia_benchmark as audit
from tasks.platform.errors import ParamsError
from tasks.platform.params import load_all

@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_sections_validate(profile) -> None:
    papers = discover()
    out = load_all({n: p.params_model for n, p in papers.items()}, profile)
    assert out["mia_benchmark"].mia.digits.n_shadow >= 4
    if profile == "full":
        assert out["mia_benchmark"].mia.digits.n_shadow == 16  # the LiRA-16 speed target


def test_unknown_attack_named() -> None:
    with pytest.raises(ValueError, match="unknown attack 'lira_onlin'"):
        audit.MIAParams(attacks=("loss", "lira_onlin"))


def test_reference_attacks_need_shadows() -> None:
    with pytest.raises(ValueError, match="n_shadow = 1"):
        audit.MIAParams(attacks=("lira_online",), n_shadow=1)
    audit.MIAParams(attacks=("loss",), n_shadow=0)  # metric attacks need none


def test_params_error_names_key_path() -> None:
    papers = discover()
    bad = {"mia_benchmark": {"mia": {"digits": {"attacks": ["nope"]}}}}
    with pytest.raises(ParamsError, match=r"mia_benchmark\.mia\.digits\.attacks"):
        load_all({n: p.params_model for n, p in papers.items()}, "smoke", overrides=bad)
