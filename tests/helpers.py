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
    "Exit code 2 and one stderr line `prog: error: ...` naming each of `names` (TensorFlow's startup chatter aside)."
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = [l for l in err.strip().splitlines() if l.startswith(f'{prog}: ')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    assert lines[0].startswith(f'{prog}: error: ')
    for n in names: assert str(n) in lines[0], (n, lines[0])
