"The numpy core (data, transforms, metrics, instances, evaluate, eda, synthetic, the engine and prediction) works without loading TensorFlow."
import subprocess
import sys

import cv2
import numpy as np
import pytest

from nuclei_unet.synthetic import make_synthetic

NUMPY_CORE = ['core', 'config', 'data', 'synthetic', 'eda', 'plots', 'transforms', 'metrics', 'instances', 'evaluate', 'engine', 'predict', 'cli']


def _without_tensorflow(code: str):
    "Run `code` in a fresh interpreter, then check that neither tensorflow nor keras was imported."
    check = "import sys; bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; assert not bad, bad"
    r = subprocess.run([sys.executable, '-c', f'{code}\n{check}'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.parametrize('module', NUMPY_CORE)
def test_numpy_modules_import_without_tensorflow(module):
    _without_tensorflow(f'import nuclei_unet.{module}')


def test_evaluate_pred_runs_without_tensorflow(tmp_path):
    "Scoring a folder of label images made elsewhere needs no network."
    data = make_synthetic(tmp_path / 'syn', n=2)
    (tmp_path / 'pred').mkdir()
    for d in sorted(data.iterdir()):
        truth = np.zeros(cv2.imread(str(next((d / 'images').iterdir())), cv2.IMREAD_UNCHANGED).shape[:2], np.uint16)
        truth[10:30, 10:30] = 1
        cv2.imwrite(str(tmp_path / 'pred' / f'{d.name}.png'), truth)
    r = _without_tensorflow(f"from nuclei_unet.cli import evaluate\nassert evaluate(['--data', {str(data)!r}, '--pred', {str(tmp_path / 'pred')!r}]) == 0")
    assert 'mean of 2' in r.stdout
