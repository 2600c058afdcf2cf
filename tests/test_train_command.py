"`nuclei_train` as users run it: real training on real files, bad flags, and a run killed with SIGKILL."
import csv
import signal
import subprocess
import shutil
import sys
import time

import pytest

from conftest import ROOT
from helpers import assert_one_line_error, run_script
from nuclei_unet.model import load_model
from nuclei_unet.synthetic import make_synthetic

TINY = ['-s', '64', '-c', '0.5']


def epochs_in(history):
    "The epoch column of a history.csv."
    with open(history) as f: return [int(r['epoch']) for r in csv.DictReader(f)]


def test_fresh_install_default_run(tmp_path):
    "`nuclei_train -s 64 -c 0.5 -e 2` with no data: the synthetic default, three files in output/train."
    code, out, err = run_script('nuclei_train', *TINY, '-e', '2', cwd=tmp_path)
    assert code == 0, err
    run = tmp_path / 'output' / 'train'
    assert {'model.keras', 'history.csv', 'hist.png'} <= {p.name for p in run.iterdir()}
    assert epochs_in(run / 'history.csv') == [0, 1]
    assert (run / 'hist.png').read_bytes()[:4] == b'\x89PNG'
    model, cfg, info = load_model(run / 'model.keras')
    assert (cfg.size, cfg.channel_rate) == (64, 0.5) and info['run']['epochs'] == 2
    assert model.predict(__import__('numpy').zeros((1, 48, 96, 3), 'float32'), verbose=0).shape == (1, 48, 96, 2)
    assert 'best epoch' in out


@pytest.mark.parametrize('flags, named', [
    (['-s', '100'], '--size 100'), (['-s', 'big'], '--size'), (['-c', '3'], '--channel-rate 3'),
    (['-e', '0'], '--epochs 0'), (['--dropout', '0.9'], '--dropout 0.9'), (['--val-fraction', '1'], '--val-fraction 1'),
    (['--loss', 'mse'], '--loss'), (['--jitter', '1.5'], '--jitter 1.5: needs --diameter'),
])
def test_bad_flags(tmp_path, flags, named):
    assert_one_line_error(run_script('nuclei_train', *flags, '--out', tmp_path / 'o'), 'nuclei_train', named)


def test_bad_data_and_out(tmp_path):
    assert_one_line_error(run_script('nuclei_train', '--data', tmp_path / 'nope', '--out', tmp_path / 'o'), 'nuclei_train', tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    assert_one_line_error(run_script('nuclei_train', '--data', tmp_path / 'empty', '--out', tmp_path / 'o'), 'nuclei_train', 'no images')
    one = make_synthetic(tmp_path / 'one', n=1)
    assert_one_line_error(run_script('nuclei_train', *TINY, '--data', one, '--out', tmp_path / 'o'), 'nuclei_train', 'at least 2 images')
    (tmp_path / 'file').write_text('x')
    assert_one_line_error(run_script('nuclei_train', '--out', tmp_path / 'file' / 'run'), 'nuclei_train', '--out')


def test_images_without_masks(tmp_path):
    syn = make_synthetic(tmp_path / 'syn', n=3)
    flat = tmp_path / 'flat'; flat.mkdir()
    for d in syn.iterdir(): shutil.copy(next((d / 'images').iterdir()), flat)
    assert_one_line_error(run_script('nuclei_train', *TINY, '--data', flat, '--out', tmp_path / 'o'), 'nuclei_train', 'no masks')


def test_sigkill_then_rerun_resumes(tmp_path):
    "Kill -9 once the first epoch is saved; the same command continues, and each epoch is in the history once."
    args = [*TINY, '-e', '4', '--steps-per-epoch', '4', '--out', tmp_path / 'run']
    proc = subprocess.Popen([shutil.which('nuclei_train'), *map(str, args)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / 'run' / 'last.keras'
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline: time.sleep(0.05)
    proc.send_signal(signal.SIGKILL); proc.wait()
    done = epochs_in(tmp_path / 'run' / 'history.csv')
    assert 1 <= len(done) < 4, f'the run was not killed part way: {done}'
    code, out, err = run_script('nuclei_train', *args, cwd=tmp_path)
    assert code == 0, err
    assert f'resuming {tmp_path / "run"} after epoch {len(done)} of 4' in err
    assert epochs_in(tmp_path / 'run' / 'history.csv') == [0, 1, 2, 3]
    assert not [p for p in (tmp_path / 'run').iterdir() if p.name.startswith('.') and p.name != '.lock']   # no temporary left (.lock: the run folder's lock)


def test_papermill_run(tmp_path):
    "The papermill notebook runs with parameters from the command line and writes a resumable run with the loss asked for."
    r = subprocess.run([sys.executable, '-m', 'papermill', str(ROOT / 'nbs' / 'train_run.ipynb'), str(tmp_path / 'out.ipynb'),
                        '-p', 'epochs', '2', '-p', 'out_dir', str(tmp_path / 'run'), '-p', 'loss', 'bce_dice_lovasz', '--cwd', str(ROOT / 'nbs')],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert epochs_in(tmp_path / 'run' / 'history.csv') == [0, 1]
    assert load_model(tmp_path / 'run' / 'model.keras')[1].loss == 'bce_dice_lovasz'
    assert 'val Dice' in (tmp_path / 'out.ipynb').read_text()


def test_resume_with_changed_settings_is_refused_unless_forced(tmp_path):
    "A run resumed with another learning rate is refused in one line naming --lr and --force, and left as it was."
    args = [*TINY, '--steps-per-epoch', '2', '--out', tmp_path / 'run']
    assert run_script('nuclei_train', *args, '-e', '1', cwd=tmp_path)[0] == 0
    assert_one_line_error(run_script('nuclei_train', *args, '-e', '2', '--lr', '0.05', cwd=tmp_path), 'nuclei_train', '--lr 0.05', 'trained with lr 0.001', '--force')
    assert epochs_in(tmp_path / 'run' / 'history.csv') == [0]                 # untouched (--force itself: 04_train.ipynb)
