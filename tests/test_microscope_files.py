"Real microscope files through nuclei_predict: z-stacks, channels, 16-bit with a hot pixel, OME-TIFF names, time series."
import json

import cv2
import numpy as np
import pytest
import tifffile

from helpers import assert_one_line_error, run_script
from nuclei_unet.data import find_dsb2018, list_samples, read_image
from nuclei_unet.measure import read_measurements
from nuclei_unet.metrics import dsb_score

DSB = find_dsb2018()
needs_dsb = pytest.mark.skipif(DSB is None, reason='DSB2018 stage1_train is not beside the checkout')
FLUO = '0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9'   # 256x256 fluorescence, many nuclei


@pytest.fixture(scope='module')
def nuclei16():
    "A dim 16-bit fluorescence image (values about 100..1000) made from a DSB2018 image."
    gray = read_image(DSB / FLUO / 'images' / f'{FLUO}.png')[..., 0].astype(np.uint16)
    return gray * 3 + 100


def _labels(out, name):
    return cv2.imread(str(out / 'labels' / f'{name}.png'), cv2.IMREAD_UNCHANGED)


def _predict(tmp_path, name, array, *flags, **write):
    "nuclei_predict on a folder holding `array` as `name`.tif: (result, labels or None)."
    folder, out = tmp_path / f'in_{name}', tmp_path / f'out_{name}'
    folder.mkdir()
    tifffile.imwrite(folder / f'{name}.tif', array, **write)
    result = run_script('nuclei_predict', '--data', folder, '--out', out, *flags)
    return result, (_labels(out, name.removesuffix('.ome')) if result[0] == 0 else None)


@needs_dsb
def test_planes_and_channels_are_chosen_never_cut(tmp_path, nuclei16):
    "A z-stack with an empty first plane and a 2-channel image with nuclei in channel 2: refused without a flag, right with it."
    (_, plain) = _predict(tmp_path, 'plain', nuclei16)
    assert plain.max() > 20
    empty = np.zeros_like(nuclei16)
    stack = np.stack([empty, nuclei16, nuclei16 // 2])
    r, _ = _predict(tmp_path, 'zstack', stack, photometric='minisblack', metadata=None)
    assert_one_line_error(r, 'nuclei_predict', 'zstack.tif', '3x256x256', '--z max|mean|N', '--channel N')
    r, zmax = _predict(tmp_path, 'zstack2', stack, '--z', 'max', photometric='minisblack', metadata=None)
    assert dsb_score(plain, zmax) >= 0.95
    noise = np.random.default_rng(0).integers(100, 1100, nuclei16.shape).astype(np.uint16)
    for name, arr, kw in [('cyx', np.stack([noise, nuclei16]), dict(metadata={'axes': 'CYX'})),
                          ('yxc', np.dstack([noise, nuclei16]), dict(metadata={'axes': 'YXS'}, photometric='minisblack', planarconfig='contig'))]:
        r, _ = _predict(tmp_path, name, arr, **kw)
        assert_one_line_error(r, 'nuclei_predict', f'{name}.tif', '2 channels', '--channel N')
        r, second = _predict(tmp_path, name + '2', arr, '--channel', '2', **kw)
        assert dsb_score(plain, second) >= 0.95, name


@needs_dsb
def test_hot_pixel_in_dim_16_bit_changes_nothing_measurable(tmp_path, nuclei16):
    "One pixel at 65535 in a dim 16-bit image: the labels agree with the clean image's (mAP >= 0.95)."
    _, clean = _predict(tmp_path, 'clean', nuclei16)
    hot = nuclei16.copy()
    hot[5, 250] = 65535
    _, with_hot = _predict(tmp_path, 'hot', hot)
    assert dsb_score(clean, with_hot) >= 0.95


@needs_dsb
def test_ome_tiff_by_channel_name_and_id(tmp_path, nuclei16):
    "An OME-TIFF `x.ome.tif` has the id `x`, and its channels are chosen by name."
    arr = np.stack([nuclei16 // 4, nuclei16])
    r, labels = _predict(tmp_path, 'cells.ome', arr, '--channel', 'DAPI', ome=True, metadata={'axes': 'CYX', 'Channel': {'Name': ['GFP', 'DAPI']}})
    assert r[0] == 0 and labels is not None and labels.max() > 20, r
    assert [s.id for s in list_samples(tmp_path / 'in_cells.ome')] == ['cells']
    table = read_measurements(tmp_path / 'out_cells.ome' / 'measurements' / 'cells.csv')      # every channel measured, by name
    for k, name in enumerate(['GFP', 'DAPI']):
        for i in (1, labels.max()):
            assert table[f'mean_intensity_{name}'][i - 1] == pytest.approx(arr[k][labels == i].mean(), rel=1e-5)


@needs_dsb
def test_time_series_is_predicted_frame_by_frame(tmp_path, nuclei16):
    "A 3-frame OME-TIFF movie: each frame is its own image `<id>_t<k>`, predicted as that frame alone would be, and measured."
    frames = np.stack([nuclei16, np.zeros_like(nuclei16) + 100, nuclei16[::-1, ::-1]])
    folder, out = tmp_path / 'movie_in', tmp_path / 'movie_out'
    folder.mkdir()
    tifffile.imwrite(folder / 'movie.ome.tif', frames, ome=True, metadata={'axes': 'TYX'})
    tifffile.imwrite(folder / 'third.tif', frames[2])
    assert [s.id for s in list_samples(folder)] == ['movie_t1', 'movie_t2', 'movie_t3', 'third']
    code, stdout, err = run_script('nuclei_predict', '--data', folder, '--out', out, '--export', 'geojson')
    assert code == 0, err
    assert _labels(out, 'movie_t1').max() > 20 and _labels(out, 'movie_t2').max() == 0
    np.testing.assert_array_equal(_labels(out, 'movie_t3'), _labels(out, 'third'))
    record = json.loads((out / 'records' / 'movie_t3.json').read_text())
    assert (record['image'].endswith('movie.ome.tif'), record['frame']) == (True, 3)
    assert len(read_measurements(out / 'measurements' / 'movie_t1.csv')['label']) == _labels(out, 'movie_t1').max()
    assert (out / 'geojson' / 'movie_t3.geojson').exists()
    code, stdout, err = run_script('nuclei_predict', '--data', folder, '--out', out, '--export', 'geojson')
    assert code == 0 and '0 images predicted, 4 already done' in stdout + err, (stdout, err)      # a rerun finds every frame done
