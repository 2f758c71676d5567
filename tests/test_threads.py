"""Threads are chosen for the work only where the user chose none: idle OpenMP threads sleep when
the package is imported before torch, SB3's small networks train on one thread, and a user's own
setting (or torch loaded first) is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from imaginarium.threads import USER_CHOICES, threads_for


def _child(code: str, **environment: str) -> str:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in (*USER_CHOICES, "IMAGINARIUM_CHOSE_THREADS")
    }
    env.update(environment)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


REPORT = "import os; print(os.environ.get('OMP_WAIT_POLICY'))"


def test_importing_the_package_first_makes_idle_threads_sleep() -> None:
    assert _child(f"import imaginarium; {REPORT}") == "PASSIVE"


@pytest.mark.parametrize("choice", ["OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY"])
def test_a_users_own_choice_is_left_alone(choice: str) -> None:
    value = {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "1000", "OMP_WAIT_POLICY": "ACTIVE"}[choice]
    expected = "ACTIVE" if choice == "OMP_WAIT_POLICY" else "None"
    assert _child(f"import imaginarium; {REPORT}", **{choice: value}) == expected


def test_torch_loaded_first_is_left_as_it_loaded() -> None:
    assert _child(f"import torch, imaginarium; {REPORT}") == "None"


def test_a_child_of_the_package_keeps_its_choice_and_may_add_its_own() -> None:
    """Ray workers and subprocesses inherit the sleeping threads; a thread count they set is theirs."""
    code = (
        "import os, subprocess, sys, imaginarium; "
        "env = {**os.environ, 'OMP_NUM_THREADS': '1'}; "
        "print(subprocess.run([sys.executable, '-c', 'import imaginarium.threads as t; print(t.user_chose())'], "
        "env=env, capture_output=True, text=True).stdout.strip(), "
        "subprocess.run([sys.executable, '-c', 'import imaginarium.threads as t; print(t.user_chose())'], "
        "capture_output=True, text=True).stdout.strip())"
    )
    assert _child(code) == "True False"


def test_threads_for_sets_torch_threads_inside_and_restores_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*USER_CHOICES, "IMAGINARIUM_CHOSE_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    with threads_for(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv("OMP_NUM_THREADS", str(before))
    with threads_for(1):
        assert torch.get_num_threads() == before  # the user chose
