"Running the installed console scripts the way users do, and checking their one-line errors."
import shutil
import subprocess


def run_script(name, *args, cwd=None, timeout=600):
    "Run installed command `name` with `args`; return (exit code, stdout, stderr)."
    exe = shutil.which(name)
    assert exe, f'{name} is not installed: pip install -e ".[dev]"'
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def assert_one_line_error(result, prog, *names):
    "Exit code 2 and stderr of exactly one line, `prog: error: ...`, naming each of `names`."
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'{prog}: error: '), err
    for n in names: assert str(n) in lines[0], (n, lines[0])


def dsb_folder(folder, pick):
    "A flat folder of links to the DSB2018 images that `pick(samples)` chooses; the test is skipped without DSB2018."
    import pytest
    from conftest import ROOT
    from nuclei_unet.data import find_dsb2018, list_samples
    dsb = find_dsb2018(ROOT)
    if dsb is None: pytest.skip('DSB2018 stage1_train not found')
    for s in pick(list_samples(dsb)): (folder / s.image.name).symlink_to(s.image)
    return folder
