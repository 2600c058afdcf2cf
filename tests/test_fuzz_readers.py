"About 300 seeded mutations of real PNG, JPEG, BMP and TIFF files: each ends in a result or one NucleiError, in process and through nuclei_predict."
import signal
import struct

import cv2
import numpy as np
import pytest
import tifffile

from helpers import run_script
from nuclei_unet.core import NucleiError
from nuclei_unet.data import read_raw

N_MUTANTS, SECONDS_PER_FILE = 300, 10


def seeds(folder):
    "Small real files of each kind the reader takes: 8- and 16-bit PNG, RGB PNG, JPEG, BMP, LZW and Deflate TIFF."
    rng = np.random.default_rng(0)
    gray = cv2.GaussianBlur((rng.random((48, 72)) > 0.97).astype(np.float32), (0, 0), 3)
    gray = (gray / gray.max() * 255).astype(np.uint8)
    files = {'g8.png': gray, 'g16.png': gray.astype(np.uint16) * 200, 'rgb.png': np.dstack([gray, gray // 2, gray]),
             'g.jpg': gray, 'g.bmp': gray}
    for name, arr in files.items(): cv2.imwrite(str(folder / name), arr)
    tifffile.imwrite(folder / 'lzw.tif', gray.astype(np.uint16) * 100, compression='lzw')
    tifffile.imwrite(folder / 'zip.tif', gray, compression='zlib', tile=(16, 16))
    return sorted(folder.iterdir())


def mutate(data: bytes, rng) -> bytes:
    "One of: cut short, bits flipped, header bytes overwritten, or (PNG) the size in the header made huge."
    b = bytearray(data)
    kind = rng.integers(4)
    if kind == 0: return bytes(b[:rng.integers(1, len(b))])
    if kind == 1:
        for i in rng.integers(0, len(b), rng.integers(1, 20)): b[i] ^= 1 << int(rng.integers(8))
    elif kind == 2:
        i = int(rng.integers(0, min(64, len(b) - 4)))
        b[i:i + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    elif b[:4] == b'\x89PNG': b[16:24] = struct.pack('>II', *rng.integers(1, 1 << 20, 2))
    else: b[rng.integers(len(b))] ^= 0xFF
    return bytes(b)


@pytest.fixture(scope='module')
def mutants(tmp_path_factory):
    src, out = tmp_path_factory.mktemp('seeds'), tmp_path_factory.mktemp('mutants')
    rng = np.random.default_rng(2026)
    files = seeds(src)
    for k in range(N_MUTANTS):
        f = files[k % len(files)]
        (out / f'm{k:03d}{f.suffix}').write_bytes(mutate(f.read_bytes(), rng))
    return out


def test_reader_never_crashes_or_hangs(mutants):
    def too_slow(*_): raise TimeoutError
    old = signal.signal(signal.SIGALRM, too_slow)
    outcomes, failures = {'read': 0, 'refused': 0}, []
    try:
        for f in sorted(mutants.iterdir()):
            signal.alarm(SECONDS_PER_FILE)
            try:
                raw = read_raw(f)
                assert raw.pixels.ndim == 3 and raw.pixels.size > 0
                outcomes['read'] += 1
            except NucleiError as e:
                assert str(f) in str(e) and '\n' not in str(e), str(e)                      # one line naming the file
                outcomes['refused'] += 1
            except BaseException as e: failures.append(f'{f.name}: {type(e).__name__}: {e}')
            finally: signal.alarm(0)
    finally: signal.signal(signal.SIGALRM, old)
    assert not failures, failures[:5]
    assert outcomes['read'] > 20 and outcomes['refused'] > 100, outcomes                    # both outcomes exercised


def test_nuclei_predict_over_the_mutants(mutants, tmp_path):
    code, stdout, err = run_script('nuclei_predict', '--data', mutants, '--out', tmp_path / 'out', '--diameter', '20', '--figures', 'none', timeout=900)
    assert code == 1, (code, stdout, err)                                                  # some skipped, the rest predicted
    lines = err.strip().splitlines()
    assert lines and all(l.startswith('nuclei_predict: skipped ') for l in lines), [l for l in lines if not l.startswith('nuclei_predict: skipped ')][:5]
    assert 'Traceback' not in err
    done = len(list((tmp_path / 'out' / 'labels').glob('*.png')))
    assert done + len(lines) == N_MUTANTS, (done, len(lines))
