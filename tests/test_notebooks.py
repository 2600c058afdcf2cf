"The notebooks are the source: they must pass as tests and match the package, their cleaned form and README.md."
import filecmp
import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from nuclei_unet.notebooks import NOT_RUN


def run(cmd, cwd=ROOT, timeout=1200):
    "Run `cmd`, returning the completed process (output captured)."
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_nbdev_test_passes():
    "Every notebook in nbs/ runs top to bottom (slow and gpu cells skipped)."
    r = run(['nbdev_test', '--n_workers', '2', '--timing'])
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout)


@pytest.fixture
def tracked_copy(tmp_path):
    "A copy of the files git tracks (plus untracked, unignored ones), in a scratch folder."
    r = run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'])
    if r.returncode != 0: pytest.skip('not a git checkout')
    for name in r.stdout.split('\n'):
        if name and (ROOT / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def changed(a, b, pattern):
    "Files matching `pattern` that differ between folders `a` and `b`."
    return [p.relative_to(a).as_posix() for p in sorted(a.glob(pattern))
            if not (b / p.relative_to(a)).exists() or not filecmp.cmp(p, b / p.relative_to(a), shallow=False)]


def test_export_and_clean_leave_no_diff(tracked_copy):
    "nbdev_export reproduces the committed package, and nbdev_clean leaves the committed notebooks unchanged."
    for cmd in (['nbdev_export'], ['nbdev_clean']):
        r = run(cmd, cwd=tracked_copy)
        assert r.returncode == 0, r.stdout + r.stderr
    assert changed(tracked_copy, ROOT, 'nuclei_unet/*.py') == [], 'package differs from notebooks: run nbdev_export'
    assert changed(tracked_copy, ROOT, 'nbs/*.ipynb') == [], 'notebooks are not clean: run nbdev_clean'


def test_readme_is_the_index_notebook(tmp_path):
    "README.md is nbs/index.ipynb converted to markdown."
    r = run([sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'markdown', str(ROOT / 'nbs' / 'index.ipynb'),
             '--output-dir', str(tmp_path), '--output', 'README'])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'README.md').read_text() == (ROOT / 'README.md').read_text(), \
        'README.md is stale: jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README'


def test_ci_runs_the_readme_commands():
    "`.ci/run` takes its commands from README's quick start, and there are exactly four."
    r = run(['bash', '.ci/run', '--print'])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split('\n')[:4] == ['pip install -e ".[dev]"', 'nuclei_eda --json', 'nuclei_predict --out output/predict', 'pytest']


FIGURE_CALL = re.compile(r'^(?!\s*(def |#)).*(\bplt\.|\bplot_\w+\(|\.imshow\()', re.M)
SKIPPED = re.compile(r'^#\|\s*(export|hide|slow|gpu|eval: false)', re.M)


def notebooks():
    "The committed notebooks, parsed."
    return {p.name: json.loads(p.read_text()) for p in sorted((ROOT / 'nbs').glob('*.ipynb'))}


def test_figure_cells_show_their_pictures():
    "A cell that draws (and runs under nbdev_test) is committed with its picture: `python -m nuclei_unet.notebooks`."
    missing = [f"{name} cell {c['id']}" for name, nb in notebooks().items() if name not in NOT_RUN
               for c in nb['cells'] if c['cell_type'] == 'code' and FIGURE_CALL.search(''.join(c['source']))
               and not SKIPPED.search(''.join(c['source']))
               and not any('image/png' in o.get('data', {}) for o in c.get('outputs', []))]
    assert missing == [], f'figure cells without a saved picture (run python -m nuclei_unet.notebooks): {missing}'


PRINT_CALL = re.compile(r'^print\(', re.M)


def test_printing_cells_keep_their_lines():
    "A cell that prints at its top level is committed with the printed lines (execnb drops them when the cell ends in ';')."
    missing = [f"{name} cell {c['id']}" for name, nb in notebooks().items() if name not in NOT_RUN
               for c in nb['cells'] if c['cell_type'] == 'code' and PRINT_CALL.search(''.join(c['source']))
               and not SKIPPED.search(''.join(c['source']))
               and not any(o.get('output_type') == 'stream' for o in c.get('outputs', []))]
    assert missing == [], f'printing cells without their saved lines (end them without ";", run python -m nuclei_unet.notebooks): {missing}'


def test_notebooks_stay_small():
    "nbs/ under 10 MB, each saved picture under 300 kB."
    assert sum(p.stat().st_size for p in (ROOT / 'nbs').glob('*.ipynb')) < 10e6
    sizes = {f"{name} {c['id']}": len(o['data']['image/png']) * 3 / 4 for name, nb in notebooks().items()
             for c in nb['cells'] for o in c.get('outputs', []) if 'image/png' in o.get('data', {})}
    assert sizes and max(sizes.values()) < 300e3, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
