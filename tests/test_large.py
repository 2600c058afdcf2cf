"Images predicted block by block (`large`): the same nuclei as the whole image, and a killed run resumes to the same labels."
import signal
import subprocess
import sys
import time
import zipfile

import cv2
import numpy as np
import pytest
import tifffile

from conftest import ROOT
from nuclei_unet.data import find_dsb2018, read_raw
from nuclei_unet.large import predict_large, slide_tiles, write_slide
from nuclei_unet.metrics import dsb_score
from nuclei_unet.predict import load_pretrained

SIDE, BLOCK, DIAMETER = 1024, 240, 16.0        # blocks under a quarter of the side, their borders off the crops' seams; the diameter given, as for the whole image


@pytest.fixture(scope='module')
def slide(tmp_path_factory):
    "A 1024x1024 gray slide tiled from DSB2018 fluorescence crops, its top-left block empty."
    dsb = find_dsb2018(ROOT)
    if dsb is None: pytest.skip('DSB2018 stage1_train not found')
    return write_slide(tmp_path_factory.mktemp('slide') / 'slide.tif', SIDE, slide_tiles(dsb, 16))


@pytest.fixture(scope='module')
def predictor(): return load_pretrained()


@pytest.fixture(scope='module')
def blockwise(slide, predictor, tmp_path_factory):
    out = tmp_path_factory.mktemp('blockwise') / 'slide.ome.zarr'
    return predict_large(slide, out, predictor, diameter=DIAMETER, block=BLOCK, tiff=out.with_suffix('.tif'), progress=False)


def nuclei_across(labels, block):
    "The nuclei of `labels` with pixels on both sides of a block border."
    cut = set()
    for b in range(block, labels.shape[0], block): cut |= set(np.intersect1d(labels[b - 1], labels[b]))
    for b in range(block, labels.shape[1], block): cut |= set(np.intersect1d(labels[:, b - 1], labels[:, b]))
    return cut - {0}


def test_blockwise_matches_whole_image(slide, predictor, blockwise):
    whole = predictor.predict(read_raw(slide).rgb, DIAMETER).labels
    labels = np.asarray(blockwise.labels)
    assert len(nuclei_across(whole, BLOCK)) >= 20                      # the borders cut many nuclei
    assert labels[:BLOCK, :BLOCK].max() == 0 and whole[:BLOCK, :BLOCK].max() == 0   # an empty block stays empty
    assert dsb_score(whole, labels) >= 0.98
    assert labels.max() == blockwise.nuclei == len(np.unique(labels)) - 1   # numbered 1..N
    assert abs(blockwise.nuclei - whole.max()) <= 0.02 * whole.max()


def test_outputs_agree(blockwise):
    labels = np.asarray(blockwise.labels)
    assert labels.dtype == np.uint16                                   # uint32 only above 65,535 nuclei
    np.testing.assert_array_equal(tifffile.imread(blockwise.tiff), labels)
    t = blockwise.table
    np.testing.assert_array_equal(t['label'], np.arange(1, blockwise.nuclei + 1))    # one row per nucleus, in order
    area = np.bincount(labels.ravel(), minlength=blockwise.nuclei + 1)[1:]
    np.testing.assert_array_equal(t['area_px2'], area)                 # measured whole, across block borders too
    rows, cols = np.nonzero(labels == labels.max())
    assert (t['bbox_min_row_px'][-1], t['bbox_min_col_px'][-1]) == (rows.min(), cols.min())
    assert not any(p.name.startswith('.') for p in blockwise.path.parent.iterdir())   # the work folder is gone


RUN = '''
import sys
from nuclei_unet.large import predict_large
predict_large(sys.argv[1], sys.argv[2], diameter=float(sys.argv[3]), block=int(sys.argv[4]), progress=False)
'''


def test_killed_run_resumes_to_the_same_labels(slide, blockwise, tmp_path):
    out = tmp_path / 'again.ome.zarr'
    args = [sys.executable, '-c', RUN, slide, out, DIAMETER, BLOCK]
    p = subprocess.Popen(list(map(str, args)), stderr=subprocess.PIPE)
    rows = tmp_path / '.again.ome.zarr.work' / 'rows'
    deadline = time.time() + 300
    while not any(rows.glob('0.npy')) and p.poll() is None and time.time() < deadline: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL and not out.exists()        # killed after the first row of tiles, before the end
    code = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=600)
    assert code.returncode == 0, code.stderr
    np.testing.assert_array_equal(read_raw(out).pixels[..., 0], np.asarray(blockwise.labels))


def test_nuclei_predict_takes_large_images_blockwise(slide, tmp_path):
    from helpers import run_script
    data = tmp_path / 'data'
    data.mkdir()
    tifffile.imwrite(data / 'slide.tif', tifffile.imread(slide)[:512, :512], tile=(128, 128), compression='zlib')
    tifffile.imwrite(data / 'small.tif', tifffile.imread(slide)[256:512, 256:512])
    out = tmp_path / 'out'
    args = ['--data', data, '--out', out, '--diameter', DIAMETER, '--blockwise', 0.2, '--block', 128, '--tiff', '--figures', 'all', '--export', 'rois,geojson']
    code, stdout, err = run_script('nuclei_predict', *args)
    assert code == 0, err
    assert '2 images predicted' in stdout
    labels = np.asarray(read_raw(out / 'labels' / 'slide.ome.zarr').pixels[..., 0])       # our reader reads our OME-Zarr
    np.testing.assert_array_equal(tifffile.imread(out / 'labels' / 'slide.tif'), labels)
    assert (out / 'labels' / 'small.png').exists() and not (out / 'labels' / 'slide.png').exists()
    rows = (out / 'measurements.csv').read_text().splitlines()
    assert sum(r.startswith('slide,') for r in rows) == labels.max() > 50
    record = __import__('json').loads((out / 'records' / 'slide.json').read_text())
    assert record['blockwise']['blocks'] == 16 and record['nuclei'] == labels.max()
    assert {r.split(',')[0] for r in (out / 'submission.csv').read_text().splitlines()[1:]} == {'small'}
    np.testing.assert_array_equal(tifffile.imread(out / 'masks' / 'slide.tif'), (labels > 0) * 255)     # every output, as for a small image
    features = __import__('json').loads((out / 'geojson' / 'slide.geojson').read_text())['features']
    assert sorted(f['properties']['label'] for f in features) == list(range(1, labels.max() + 1))
    assert len(zipfile.ZipFile(out / 'rois' / 'slide.zip').namelist()) == labels.max()
    assert cv2.imread(str(out / 'figures' / 'slide.png')).shape[1] > 256
    code, stdout, err = run_script('nuclei_predict', *args)
    assert code == 0 and '0 images predicted, 2 already done' in stdout, (stdout, err)
    def exported():
        features = __import__('json').loads((out / 'geojson' / 'slide.geojson').read_text())['features']
        return ([(f['id'], f['geometry'], sorted(f['properties']['measurements'])) for f in features],
                np.array([list(f['properties']['measurements'].values()) for f in features]),
                {n: z.read(n) for z in [zipfile.ZipFile(out / 'rois' / 'slide.zip')] for n in z.namelist()})
    first = exported()
    (out / 'geojson' / 'slide.geojson').unlink(); (out / 'rois' / 'slide.zip').unlink()
    code, stdout, err = run_script('nuclei_predict', *args)                   # --export on a rerun: the blockwise image's exports too
    assert code == 0 and '0 images predicted, 2 already done' in stdout, (stdout, err)
    again = exported()                                                        # the same outlines and ROIs, in the same order; measurements from the CSV
    assert again[0] == first[0] and again[2] == first[2]
    np.testing.assert_allclose(again[1], first[1], rtol=1e-9)
