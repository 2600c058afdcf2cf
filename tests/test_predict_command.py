"`nuclei_predict` and `nuclei_evaluate` as users run them, on real DSB2018 images and odd files."
import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT
from helpers import assert_one_line_error, run_script
from nuclei_unet.data import decode_file, find_dsb2018, list_samples, read_image
from nuclei_unet.instances import rles_to_labels
from nuclei_unet.synthetic import make_synthetic


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    "A small model trained by the real command (quality is not the point here)."
    run = tmp_path_factory.mktemp('train') / 'run'
    code, _, err = run_script('nuclei_train', '-s', '64', '-c', '0.5', '-e', '1', '--steps-per-epoch', '2', '--out', run)
    assert code == 0, err
    return run / 'model.keras'


@pytest.fixture(scope='module')
def held_out(tmp_path_factory):
    "A folder of DSB2018 images of several sizes and modalities (links, not copies), else synthetic."
    dsb = find_dsb2018(ROOT)
    folder = tmp_path_factory.mktemp('held_out')
    if dsb is None: return make_synthetic(folder / 'syn', n=3)
    picked = {}
    for s in list_samples(dsb):
        shape = read_image(s.image).shape[:2]
        if shape not in picked: picked[shape] = s
        if len(picked) == 5: break
    for s in picked.values(): (folder / s.id).symlink_to(s.image.parent.parent)
    return folder


def test_outputs_at_original_size_describe_the_same_nuclei(tmp_path, model, held_out):
    out = tmp_path / 'pred'
    code, stdout, err = run_script('nuclei_predict', '--data', held_out, '--model', model, '--out', out)
    assert code == 0, err
    rows = list(csv.DictReader(open(out / 'submission.csv')))
    for s in list_samples(held_out):
        h, w = read_image(s.image).shape[:2]
        labels, mask = decode_file(out / 'labels' / f'{s.id}.png'), decode_file(out / 'masks' / f'{s.id}.png')
        assert labels.shape == mask.shape == (h, w) and labels.dtype == np.uint16
        assert set(np.unique(mask)) <= {0, 255} and ((mask > 0) == (labels > 0)).all()
        rles = [r['EncodedPixels'] for r in rows if r['ImageId'] == s.id]
        assert len(rles) == max(1, labels.max())
        assert (rles_to_labels(rles, (h, w)) == labels).all()
        assert (out / 'figures' / f'{s.id}.png').read_bytes()[:4] == b'\x89PNG'
    measured = list(csv.DictReader(open(out / 'measurements.csv')))
    per_image = {s.id: decode_file(out / 'labels' / f'{s.id}.png').max() for s in list_samples(held_out)}
    assert len(measured) == sum(per_image.values())                                 # one row per nucleus in labels/
    for i, n in per_image.items():
        rows = [r for r in measured if r['image'] == i]
        assert [int(r['label']) for r in rows] == list(range(1, n + 1))
        assert sum(float(r['area_px2']) for r in rows) == (decode_file(out / 'labels' / f'{i}.png') > 0).sum()
    summary = {r['image']: r for r in csv.DictReader(open(out / 'summary.csv'))}
    assert {i: int(summary[i]['nuclei']) for i in per_image} == per_image


def test_odd_formats_and_sizes(tmp_path, model):
    "Gray, RGBA and 16-bit images of sizes that are not multiples of 16 come back at their own size."
    flat = tmp_path / 'flat'; flat.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(flat / 'gray.png'), (rng.random((37, 53)) * 255).astype(np.uint8))
    cv2.imwrite(str(flat / 'rgba.png'), (rng.random((90, 17, 4)) * 255).astype(np.uint8))
    cv2.imwrite(str(flat / 'deep.tif'), (rng.random((130, 600)) * 4095).astype(np.uint16))
    code, _, err = run_script('nuclei_predict', '--data', flat, '--model', model, '--out', tmp_path / 'o', '--tta')
    assert code == 0, err
    shapes = {p.stem: decode_file(p).shape for p in (tmp_path / 'o' / 'labels').iterdir()}
    assert shapes == {'gray': (37, 53), 'rgba': (90, 17), 'deep': (130, 600)}


def test_rerun_skips_and_overwrite_redoes(tmp_path, model):
    data = make_synthetic(tmp_path / 'syn', n=2)
    args = ['--data', data, '--model', model, '--out', tmp_path / 'o']
    assert run_script('nuclei_predict', *args)[0] == 0
    code, out, _ = run_script('nuclei_predict', *args)
    assert code == 0 and '0 images predicted, 2 already done' in out
    code, out, _ = run_script('nuclei_predict', *args, '--overwrite')
    assert code == 0 and '2 images predicted, 0 already done' in out
    cut = sorted((tmp_path / 'o' / 'labels').iterdir())[0]
    cut.write_bytes(cut.read_bytes()[:-20])                                   # a label image damaged on disk is not done
    code, out, _ = run_script('nuclei_predict', *args)
    assert code == 0 and '1 images predicted, 1 already done' in out
    assert decode_file(cut).ndim == 2


def test_bad_images_are_reported_and_skipped(tmp_path, model):
    data = make_synthetic(tmp_path / 'syn', n=3)
    broken = data / 'synthetic-0-0001' / 'images' / 'synthetic-0-0001.png'
    broken.write_bytes(broken.read_bytes()[:200])
    tiny = data / 'synthetic-0-0002' / 'images' / 'synthetic-0-0002.png'
    cv2.imwrite(str(tiny), np.zeros((12, 40, 3), np.uint8))
    code, out, err = run_script('nuclei_predict', '--data', data, '--model', model, '--out', tmp_path / 'o')
    assert code == 1, err
    assert '1 images predicted' in out
    lines = err.strip().splitlines()
    assert len(lines) == 2 and str(broken) in lines[0] and str(tiny) in lines[1] and '12x40' in lines[1]
    assert [p.name for p in (tmp_path / 'o' / 'labels').iterdir()] == ['synthetic-0-0000.png']


def test_complex_pixels_and_broken_links_are_skipped(tmp_path, model):
    "A complex-valued TIFF and a link to a file moved away are listed, reported in one line each and skipped (exit 1); the good image is predicted."
    import tifffile
    data = tmp_path / 'flat'; data.mkdir()
    cv2.imwrite(str(data / 'good.png'), np.full((64, 64), 90, np.uint8))
    tifffile.imwrite(data / 'complex.tif', (np.ones((64, 64)) + 1j).astype(np.complex64))
    (data / 'dangling.png').symlink_to(tmp_path / 'moved.png')
    code, out, err = run_script('nuclei_predict', '--data', data, '--model', model, '--out', tmp_path / 'o')
    assert code == 1, err
    assert '1 images predicted' in out and '2 skipped' in out, out
    lines = err.strip().splitlines()
    assert len(lines) == 2 and f'{data / "complex.tif"}: complex64 pixels' in lines[0] and f'{data / "dangling.png"}: a broken link' in lines[1], err
    assert [p.name for p in (tmp_path / 'o' / 'labels').iterdir()] == ['good.png']


@pytest.mark.parametrize('info, says', [([1, 2], 'not a nuclei_unet model (its nuclei_unet.json holds a list'),
                                        ({'config': {'size': 64, 'channel_rate': 3}}, 'damaged settings (channel_rate 3: choose from')])
def test_damaged_model_settings_name_the_model_file(tmp_path, info, says):
    "A model file whose settings are not this library's or are damaged: one line naming the file, not a traceback or a flag the user never gave."
    import zipfile
    with zipfile.ZipFile(tmp_path / 'm.keras', 'w') as z: z.writestr('nuclei_unet.json', json.dumps(info))
    data = make_synthetic(tmp_path / 'syn', n=1)
    out = ['--out', tmp_path / 'o']
    for cmd, flags in (('nuclei_predict', ['--model', *out]), ('nuclei_evaluate', ['--model']), ('nuclei_train', ['--init', *out])):
        assert_one_line_error(run_script(cmd, '--data', data, *flags[:1], tmp_path / 'm.keras', *flags[1:]), cmd, f'{tmp_path / "m.keras"}: {says}')

def test_bad_model_data_and_out(tmp_path, model):
    data = make_synthetic(tmp_path / 'syn', n=1)
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--model', tmp_path / 'none.keras'), 'nuclei_predict', 'none.keras')
    (tmp_path / 'fake.keras').write_text('not a model')
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--model', tmp_path / 'fake.keras'), 'nuclei_predict', 'fake.keras', 'not a nuclei_unet model')
    (tmp_path / 'empty').mkdir()
    assert_one_line_error(run_script('nuclei_predict', '--data', tmp_path / 'empty', '--model', model), 'nuclei_predict', 'no images')
    (tmp_path / 'file').write_text('x')
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--model', model, '--out', tmp_path / 'file' / 'o'), 'nuclei_predict', '--out')


def test_no_model_means_the_bundled_one(tmp_path):
    data = make_synthetic(tmp_path / 'syn', n=2)
    code, out, err = run_script('nuclei_predict', '--data', data, '--out', tmp_path / 'o')
    assert code == 0 and out.startswith('2 images predicted'), (out, err)
    assert sorted(p.name for p in (tmp_path / 'o' / 'labels').iterdir()) == ['synthetic-0-0000.png', 'synthetic-0-0001.png']


def test_evaluate_from_files_agrees_with_evaluate_from_model(tmp_path, model, held_out):
    pred = tmp_path / 'pred'
    assert run_script('nuclei_predict', '--data', held_out, '--model', model, '--out', pred)[0] == 0
    code, out, err = run_script('nuclei_evaluate', '--data', held_out, '--pred', pred, '--json')
    assert code == 0, err
    from_files = json.loads(out)                                     # stdout is the JSON alone
    assert {'mAP', 'AP50', 'AP75', 'dice', 'F1', 'per_image', 'by_modality'} <= set(from_files)
    code, out, err = run_script('nuclei_evaluate', '--data', held_out, '--model', model, '--json')
    assert code == 0, err
    from_model = json.loads(out)
    assert [r['mAP'] for r in from_files['per_image']] == pytest.approx([r['mAP'] for r in from_model['per_image']], abs=1e-9)
    assert_one_line_error(run_script('nuclei_evaluate', '--data', held_out, '--model', model, '--pred', pred), 'nuclei_evaluate', '--pred', '--model')


def test_papermill_predict_run(tmp_path, model):
    r = subprocess.run([sys.executable, '-m', 'papermill', str(ROOT / 'nbs' / 'predict_run.ipynb'), str(tmp_path / 'out.ipynb'),
                        '-p', 'model', str(model), '-p', 'out_dir', str(tmp_path / 'run'), '-p', 'diameter', 'auto', '--cwd', str(ROOT / 'nbs')],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((tmp_path / 'run' / 'labels').iterdir())) == 24
    assert 'mean of 24' in (tmp_path / 'out.ipynb').read_text()


@pytest.fixture(scope='module')
def diameter_model(tmp_path_factory):
    "A small model trained by the real command at a network diameter of 16 px."
    run = tmp_path_factory.mktemp('train_d') / 'run'
    code, _, err = run_script('nuclei_train', '-s', '64', '-c', '0.5', '-e', '1', '--steps-per-epoch', '2', '--diameter', '16',
                              '--augment', 'stain,blur', '--out', run)
    assert code == 0, err
    return run / 'model.keras'


def test_diameter_auto_and_given(tmp_path, diameter_model, held_out):
    "Both modes write every output at the original size and say, per image, which diameter was used."
    for mode, source in (('auto', {'estimated', 'model'}), ('60', {'given'})):
        out = tmp_path / mode
        code, _, err = run_script('nuclei_predict', '--data', held_out, '--model', diameter_model, '--out', out, '--diameter', mode)
        assert code == 0, err
        rows = {r['image']: r for r in csv.DictReader(open(out / 'summary.csv'))}
        assert set(rows) == {s.id for s in list_samples(held_out)}
        for s in list_samples(held_out):
            assert decode_file(out / 'labels' / f'{s.id}.png').shape == read_image(s.image).shape[:2]
            assert rows[s.id]['diameter_source'] in source and float(rows[s.id]['diameter_px']) > 0
            assert int(rows[s.id]['nuclei']) == decode_file(out / 'labels' / f'{s.id}.png').max()
        if mode == '60': assert {float(r['diameter_px']) for r in rows.values()} == {60.0}


def test_diameter_bad_input(tmp_path, model, diameter_model):
    data = make_synthetic(tmp_path / 'syn', n=2)
    for bad in ('0', '-4', 'big'):
        assert_one_line_error(run_script('nuclei_predict', '--data', data, '--diameter', bad), 'nuclei_predict', '--diameter', bad)
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--model', model, '--diameter', '30', '--out', tmp_path / 'n'),
                          'nuclei_predict', str(model), 'records no diameter')
    code, out, err = run_script('nuclei_predict', '--data', data, '--model', diameter_model, '--diameter', '200', '--out', tmp_path / 'o')
    assert code == 1 and '0 images predicted' in out and err.count('larger than half') == 2, (out, err)


def test_a_folder_holds_one_set_of_settings(tmp_path):
    "A rerun with other settings is refused, naming them; with --overwrite the old outputs move to .old-*/ first."
    data, out = make_synthetic(tmp_path / 'syn', n=2), tmp_path / 'out'
    assert run_script('nuclei_predict', '--data', data, '--out', out)[0] == 0
    assert run_script('nuclei_predict', '--data', data, '--out', out)[0] == 0              # same settings: resumes
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--out', out, '--tta'), 'nuclei_predict', '--out', 'other settings (', 'tta)', '--overwrite')
    code, _, err = run_script('nuclei_predict', '--data', data, '--out', out, '--tta', '--overwrite')
    assert code == 0, err
    aside = [p for p in out.iterdir() if p.name.startswith('.old-')]
    assert len(aside) == 1 and sorted(p.name for p in (aside[0] / 'labels').iterdir()) == sorted(p.name for p in (out / 'labels').iterdir())
    assert json.loads((out / 'run.json').read_text())['tta'] is True
    assert json.loads((aside[0] / 'run.json').read_text())['tta'] is False
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--out', out, '--tta', '--tile', '256'), 'nuclei_predict', '--out', 'other settings (tile)')   # tiles change the seams


def test_a_second_run_on_the_same_folder_stops_at_once(tmp_path):
    "While one run writes a folder, another on it exits 2 naming the lock's holder; the first finishes."
    data, out = make_synthetic(tmp_path / 'syn', n=24), tmp_path / 'out'
    import shutil
    first = subprocess.Popen([shutil.which('nuclei_predict'), '--data', str(data), '--out', str(out), '--figures', 'all'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out / 'run.json').exists() and first.poll() is None: pass
    second = run_script('nuclei_predict', '--data', data, '--out', out)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert_one_line_error(second, 'nuclei_predict', '--out', 'another run (')
    assert len(list((out / 'labels').iterdir())) == 24


def test_a_full_disk_is_one_line_naming_the_file(tmp_path):
    "Writes that fail (here: a file-size limit standing in for a full disk) stop the run with one line naming the file, exit 2, nothing half-written."
    data = tmp_path / 'flat'
    data.mkdir()
    for s in list_samples(make_synthetic(tmp_path / 'syn', n=2)): (data / s.image.name).write_bytes(s.image.read_bytes())
    assert run_script('nuclei_predict', '--data', data, '--out', tmp_path / 'warm')[0] == 0          # the engine's cache, made in full
    out = tmp_path / 'out'
    code = ("import resource, signal, sys\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))\nfrom nuclei_unet.cli import predict\n"
            f"sys.exit(predict(['--data', {str(data)!r}, '--out', {str(out)!r}]))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600)
    assert_one_line_error((r.returncode, r.stdout, r.stderr), 'nuclei_predict', str(out / 'figures'), 'File too large')
    assert not [p for p in out.rglob('*') if p.name.startswith('.') and 'tmp' in p.name]             # no temporary left
    assert not list((out / 'labels').iterdir())                                                       # nothing marked done


def test_an_empty_masks_folder_means_no_nuclei(tmp_path):
    "An existing, empty masks/ is an image with 0 nuclei, scored by the metric's rule (no prediction 1, any 0); a missing masks/ is no truth."
    data = tmp_path / 'kaggle'
    for name in ('empty', 'blank'):
        (data / name / 'images').mkdir(parents=True)
        cv2.imwrite(str(data / name / 'images' / f'{name}.png'), np.full((40, 40), 9, np.uint8))
        (data / name / 'masks').mkdir()
    pred = tmp_path / 'pred'; pred.mkdir()
    cv2.imwrite(str(pred / 'empty.png'), np.zeros((40, 40), np.uint16))
    some = np.zeros((40, 40), np.uint16); some[5:15, 5:15] = 1
    cv2.imwrite(str(pred / 'blank.png'), some)
    code, out, err = run_script('nuclei_evaluate', '--data', data, '--pred', pred, '--json')
    assert code == 0, err
    assert {r['id']: r['mAP'] for r in json.loads(out)['per_image']} == {'empty': 1.0, 'blank': 0.0}
    (data / 'blank' / 'masks').rmdir()
    assert_one_line_error(run_script('nuclei_evaluate', '--data', data, '--pred', pred), 'nuclei_evaluate', 'blank.png', 'no masks')
