"The inference engines: OpenVINO against the Keras reference on real images, its cache shared by processes, and its errors."
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import assert_one_line_error, run_script
from test_imports import _without_tensorflow
from nuclei_unet.config import pretrained_path, read_model_config, read_model_info
from nuclei_unet.core import has_bf16
from nuclei_unet.data import find_dsb2018, list_samples, read_sample
from nuclei_unet.synthetic import make_synthetic

DSB = find_dsb2018()
needs_dsb = pytest.mark.skipif(DSB is None, reason='DSB2018 stage1_train is not beside the checkout')


def _validation_images(n):
    "The first `n` validation images of the bundled model, as RGB uint8 arrays."
    ids = read_model_info(pretrained_path())['run']['val_ids'][:n]
    by_id = {s.id: s for s in list_samples(DSB)}
    return [read_sample(by_id[i])[0] for i in ids]


@needs_dsb
def test_openvino_f32_matches_keras_on_real_images():
    "Probabilities within 1e-3 of the traced Keras reference, on whole validation images of three sizes at least."
    from nuclei_unet.engine import load_engine
    from nuclei_unet.predict import predict_probabilities
    cfg = read_model_config(pretrained_path())
    ov, ref = load_engine(pretrained_path(), 'openvino', 'f32'), load_engine(pretrained_path(), 'keras')
    images = _validation_images(6)
    assert len({i.shape for i in images}) >= 3
    for image in images:
        diff = np.abs(predict_probabilities(ov, cfg, image) - predict_probabilities(ref, cfg, image)).max()
        assert diff < 1e-3, (image.shape, diff)


@needs_dsb
def test_openvino_bf16_keeps_the_validation_map():
    "With bf16 (on a CPU that has it), the validation mAP stays within 0.003 of the Keras reference."
    if not has_bf16():
        print('skipped: this CPU has no bf16 instructions (AVX512-BF16 or AMX); the README records bf16 figures from one that has')
        pytest.skip('this CPU has no bf16 instructions (AVX512-BF16 or AMX)')
    scores = {}
    for engine, precision in (('keras', 'f32'), ('openvino', 'bf16')):
        code, out, err = run_script('nuclei_evaluate', '--data', DSB, '--val', '--json', '--engine', engine, '--precision', precision, timeout=1800)
        assert code == 0, err
        scores[engine] = json.loads(out)['mAP']
    assert abs(scores['openvino'] - scores['keras']) <= 0.003, scores


def test_cached_conversion_predicts_without_tensorflow(tmp_path):
    "Once converted (by any process), predicting a folder never imports TensorFlow; each record names the engine."
    data = make_synthetic(tmp_path / 'syn', n=2)
    code, out, err = run_script('nuclei_predict', '--data', data, '--out', tmp_path / 'first')
    assert code == 0, err
    _without_tensorflow(f"from nuclei_unet.cli import predict\nassert predict(['--data', {str(data)!r}, '--out', {str(tmp_path / 'second')!r}]) == 0")
    for d in ('first', 'second'):
        record = json.loads(next((tmp_path / d / 'records').iterdir()).read_text())
        assert record['engine'] == 'openvino' and record['precision'] == 'int8' and record['threads'] >= 1, record   # the bundled model's int8 version
    assert sorted(os.listdir(tmp_path / 'first' / 'labels')) == sorted(os.listdir(tmp_path / 'second' / 'labels'))
    for name in os.listdir(tmp_path / 'first' / 'labels'):
        assert (tmp_path / 'first' / 'labels' / name).read_bytes() == (tmp_path / 'second' / 'labels' / name).read_bytes()


def test_parallel_processes_share_one_conversion(tmp_path):
    "Processes that find the cache empty at the same time all get the same intact conversion, and leave no temporary folder."
    env = {**os.environ, 'NUCLEI_UNET_CACHE': str(tmp_path / 'cache')}
    code = f"from nuclei_unet.engine import openvino_model\nprint(openvino_model({str(pretrained_path())!r}))"
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1000:] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1, paths
    folder = (tmp_path / 'cache' / 'openvino')
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith('.')) == []
    from nuclei_unet.engine import _intact
    from pathlib import Path
    assert _intact(Path(paths.pop()).parent)


def test_engine_errors_are_one_line(tmp_path):
    "An unknown engine, bf16 or int8 where it cannot run, and a missing OpenVINO: one line naming the flag, exit 2."
    data = make_synthetic(tmp_path / 'syn', n=1)
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--engine', 'onnx'), 'nuclei_predict', '--engine', 'onnx')
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--engine', 'keras', '--precision', 'bf16'), 'nuclei_predict', '--precision bf16')
    assert_one_line_error(run_script('nuclei_evaluate', '--data', data, '--pred', tmp_path, '--engine', 'keras'), 'nuclei_evaluate', '--engine', 'needs a model')
    copy = tmp_path / 'copy.keras'                                   # the bundled model without its int8 version beside it
    copy.write_bytes(pretrained_path().read_bytes())
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--model', copy, '--precision', 'int8'), 'nuclei_predict', '--precision int8', 'no int8 version', 'nuclei_quantize')
    assert_one_line_error(run_script('nuclei_predict', '--data', data, '--engine', 'keras', '--precision', 'int8'), 'nuclei_predict', '--precision int8', 'float32 reference')
    r = subprocess.run([sys.executable, '-c', "import sys; sys.modules['openvino'] = None\nfrom nuclei_unet.cli import predict\n"
                        f"sys.exit(predict(['--data', {str(data)!r}, '--out', {str(tmp_path / 'out')!r}]))"], capture_output=True, text=True, timeout=300)
    assert_one_line_error((r.returncode, r.stdout, r.stderr), 'nuclei_predict', '--engine openvino is not installed', 'pip install openvino')
