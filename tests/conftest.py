"Shared fixtures: the repository root, and a private cache so tests never touch the user's."
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    "Point the synthetic-data cache at a per-session temporary folder."
    monkeypatch.setenv('NUCLEI_UNET_CACHE', str(tmp_path_factory.getbasetemp() / 'cache'))


def pytest_configure(config):
    "Print the 15 slowest tests of every run (CI included), so the suite's time stays visible."
    if not config.option.durations: config.option.durations = 15
