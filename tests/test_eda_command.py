"`nuclei_eda` as users run it: the installed console script, real folders, real files."
import json
import shutil

import cv2
import numpy as np
import pytest

from conftest import ROOT
from helpers import assert_one_line_error as check_one_line_error, run_script
from nuclei_unet.data import find_dsb2018
from nuclei_unet.synthetic import make_synthetic


def nuclei_eda(*args, cwd=None):
    "Run the installed `nuclei_eda`; return (exit code, stdout, stderr)."
    return run_script('nuclei_eda', *args, cwd=cwd)


def assert_one_line_error(result, *names):
    "Exit code 2 and one `nuclei_eda: error:` line naming each of `names`."
    check_one_line_error(result, 'nuclei_eda', *names)


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    "Three synthetic samples in Kaggle layout."
    return make_synthetic(tmp_path_factory.mktemp('syn'), n=3, seed=1)


def test_default_data_json_and_figures(tmp_path):
    "No --data: the synthetic default; stdout is one JSON document (the table on stderr); both figures are written as PNG."
    code, out, err = nuclei_eda('--json', '--out', tmp_path / 'eda', cwd=tmp_path)
    assert code == 0, err
    summary = json.loads(out)
    assert summary['images'] == 24 and summary['modalities'] == {'fluorescence': 8, 'brightfield': 8, 'he': 8}
    assert summary['nuclei'] == sum(summary['nuclei_by_modality'].values()) > 24
    for f in summary['figures']: assert open(f, 'rb').read(4) == b'\x89PNG'
    assert 'nuclei per image' in err


def test_default_out_folder(tmp_path, synthetic):
    "Without --out, figures go to output/eda below the working folder."
    code, _, err = nuclei_eda('--data', synthetic, cwd=tmp_path)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / 'output' / 'eda').iterdir()) == ['examples.png', 'overview.png']


@pytest.mark.skipif(find_dsb2018(ROOT) is None, reason='DSB2018 stage1_train is not beside this checkout')
def test_dsb2018_counts(tmp_path):
    "The shared DSB2018 stage 1 set: 664 images and 28,986 nuclei, as its README states."
    code, out, err = nuclei_eda('--data', find_dsb2018(ROOT), '--json', '--out', tmp_path)
    assert code == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert (s['images'], s['nuclei'], s['images_with_masks']) == (664, 28986, 664)
    assert s['sizes']['256x256'] == 334 and sum(s['modalities'].values()) == 664


def test_missing_folder(tmp_path):
    assert_one_line_error(nuclei_eda('--data', tmp_path / 'nope', '--out', tmp_path), tmp_path / 'nope', 'no such folder')


def test_empty_folder_and_no_images(tmp_path):
    (tmp_path / 'empty').mkdir()
    assert_one_line_error(nuclei_eda('--data', tmp_path / 'empty', '--out', tmp_path / 'o'), 'empty', 'no images')
    (tmp_path / 'empty' / 'notes.txt').write_text('no images here')
    (tmp_path / 'empty' / '.DS_Store').write_bytes(b'\0')
    assert_one_line_error(nuclei_eda('--data', tmp_path / 'empty', '--out', tmp_path / 'o'), 'no images')


def kaggle_copy(src, dst):
    "A writable copy of a Kaggle-layout folder."
    shutil.copytree(src, dst)
    return dst


def test_corrupt_and_truncated_image(tmp_path, synthetic):
    data = kaggle_copy(synthetic, tmp_path / 'd')
    img = next((data / 'synthetic-1-0001' / 'images').iterdir())
    img.write_bytes(img.read_bytes()[:300])
    assert_one_line_error(nuclei_eda('--data', data, '--out', tmp_path / 'o'), img, 'not a readable image')
    img.write_text('this is text, not a PNG')
    assert_one_line_error(nuclei_eda('--data', data, '--out', tmp_path / 'o'), img)


def test_mask_of_wrong_size(tmp_path, synthetic):
    data = kaggle_copy(synthetic, tmp_path / 'd')
    mask = sorted((data / 'synthetic-1-0002' / 'masks').iterdir())[0]
    cv2.imwrite(str(mask), np.zeros((10, 12), np.uint8))
    assert_one_line_error(nuclei_eda('--data', data, '--out', tmp_path / 'o'), mask, 'mask is 10x12')


def test_hidden_and_non_image_files_are_skipped(tmp_path, synthetic):
    data = kaggle_copy(synthetic, tmp_path / 'd')
    for junk in [data / '.DS_Store', data / 'synthetic-1-0000' / 'masks' / 'Thumbs.db',
                 data / 'synthetic-1-0000' / 'images' / '._synthetic-1-0000.png', data / 'notes.txt']:
        junk.write_bytes(b'\0\1junk')
    code, out, err = nuclei_eda('--data', data, '--json', '--out', tmp_path / 'o')
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])['images'] == 3


def test_unwritable_out(tmp_path, synthetic):
    (tmp_path / 'file').write_text('x')
    assert_one_line_error(nuclei_eda('--data', synthetic, '--out', tmp_path / 'file' / 'eda'), '--out', tmp_path / 'file' / 'eda')


def test_bad_flag(tmp_path):
    assert_one_line_error(nuclei_eda('--size', '3'), '--size')


def test_flat_folder_without_masks(tmp_path, synthetic):
    "A flat folder of 16-bit TIFFs: counted and grouped, no nuclei to count."
    flat = tmp_path / 'flat'; flat.mkdir()
    for i, d in enumerate(sorted(synthetic.iterdir())):
        gray = cv2.imread(str(next((d / 'images').iterdir())), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(flat / f'img{i}.tif'), gray.astype(np.uint16) * 200)
    code, out, err = nuclei_eda('--data', flat, '--json', '--out', tmp_path / 'o')
    assert code == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert (s['images'], s['images_with_masks'], s['nuclei']) == (3, 0, None)


@pytest.mark.parametrize('name', ['complex.npy', 'complex.tif', 'dangling.png'])
def test_complex_pixels_and_broken_links_are_one_line(tmp_path, name):
    "A complex-valued image (an FFT) or a link to a file moved away, beside a good image: one line naming it, not a traceback or a silent skip."
    import tifffile
    data = tmp_path / 'flat'; data.mkdir()
    cv2.imwrite(str(data / 'good.png'), np.full((64, 64), 90, np.uint8))
    c = (np.ones((64, 64)) + 1j).astype(np.complex64)
    if name == 'complex.npy': np.save(data / name, c)
    elif name == 'complex.tif': tifffile.imwrite(data / name, c)
    else: (data / name).symlink_to(tmp_path / 'moved.png')
    assert_one_line_error(nuclei_eda('--data', data, '--out', tmp_path / 'eda'), data / name, 'a broken link' if name == 'dangling.png' else 'complex64 pixels')
