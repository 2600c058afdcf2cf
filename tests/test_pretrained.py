"The bundled DSB2018 model: inside the package and its wheel, within its size budget, and still as good as its model card says."
import json
import os
import subprocess
import sys
import zipfile

import pytest

from helpers import run_script
from conftest import ROOT
from nuclei_unet.data import MODALITIES, find_dsb2018
from nuclei_unet.config import PRETRAINED, model_info, pretrained_path, read_model_info

DSB = find_dsb2018(ROOT)
needs_dsb = pytest.mark.skipif(DSB is None and not os.environ.get('CI'), reason='DSB2018 stage1_train is not beside this checkout')


def test_bundled_model_is_package_data_within_budget():
    path = pretrained_path()
    assert path == ROOT / 'nuclei_unet' / 'models' / PRETRAINED
    assert path.stat().st_size <= 40 * 2**20, f'{path}: {path.stat().st_size / 2**20:.1f} MB, over the 40 MB budget'
    info = read_model_info(path)
    assert set(info['instances']) >= {'foreground', 'seed', 'min_size', 'use_border'}
    assert set(info['tta_instances']) == set(info['instances']) and set(info['tta_validation']) == set(info['validation'])
    assert len(info['run']['val_ids']) == 67 and set(info['validation']['by_modality']) == set(MODALITIES)
    assert info['validation']['mAP'] >= 0.5, info['validation']
    named = model_info(path)                                            # the same file read by name
    assert (named.val_ids, named.instances, named.validation) == (info['run']['val_ids'], info['instances'], info['validation'])
    assert named.thresholds(tta=True) == info['tta_instances'] and named.config.diameter == 20


def test_wheel_carries_the_bundled_model(tmp_path):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel, = tmp_path.glob('nuclei_unet-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    assert f'nuclei_unet/models/{PRETRAINED}' in names
    assert {f'nuclei_unet/models/dsb2018_unet.int8/{n}' for n in ('model.xml', 'model.bin', 'manifest.json')} <= set(names)


def test_bundled_int8_version_is_made_from_the_bundled_model():
    "The shipped int8 version is intact, made from this very model file, checked on the 67 validation images, and the default."
    from nuclei_unet.engine import default_precision, int8_folder, int8_model
    assert int8_model(pretrained_path()) == int8_folder(pretrained_path()) / 'model.xml'
    manifest = json.loads((int8_folder(pretrained_path()) / 'manifest.json').read_text())
    assert manifest['check']['images'] == 67 and manifest['calibration']['images'] == 597
    assert manifest['check']['int8'] >= manifest['check']['f32'] - 0.003, manifest['check']
    assert default_precision('openvino', {'avx2'}, pretrained_path()) == 'int8'


@needs_dsb
def test_bundled_model_keeps_its_validation_map():
    "The regression test: the bundled model, on its own validation images, within 0.01 of the mAP its card records, and int8 within 0.003 of f32."
    assert DSB is not None, 'DSB2018 stage1_train must be beside the checkout on CI'
    recorded, found = read_model_info(pretrained_path())['validation'], {}
    for precision in ('f32', 'int8'):
        code, out, err = run_script('nuclei_evaluate', '--data', DSB, '--val', '--json', '--precision', precision, timeout=900)
        assert code == 0, err
        scores = found[precision] = json.loads(out)
        assert scores['images'] == recorded['images'] == 67
        assert abs(scores['mAP'] - recorded['mAP']) <= 0.01, (precision, scores['mAP'], recorded['mAP'])
        for m, v in recorded['by_modality'].items():
            assert abs(scores['by_modality'][m]['mAP'] - v['mAP']) <= 0.02 * max(1, 10 / v['images']), (precision, m, scores['by_modality'][m], v)
    assert abs(found['int8']['mAP'] - found['f32']['mAP']) <= 0.003, {p: s['mAP'] for p, s in found.items()}
