"`nuclei_predict --scheduler` on a real Dask LocalCluster of 2 worker processes of 2 threads each on loopback (threads share a process's model): the same labels as a local run, and a killed worker's images done elsewhere."
import os
import signal
import threading
import time

import pytest

from helpers import assert_one_line_error, dsb_folder, run_script
from nuclei_unet.data import list_samples

N_IMAGES = 8


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    "A flat folder of DSB2018 images (links)."
    return dsb_folder(tmp_path_factory.mktemp('images'), lambda samples: samples[:N_IMAGES])


@pytest.fixture(scope='module')
def cluster():
    distributed = pytest.importorskip('distributed')
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host='127.0.0.1', dashboard_address=None) as c:
        yield c


def outputs(out):
    return {p.name: p.read_bytes() for p in (out / 'labels').iterdir()}


def test_cluster_run_matches_local_run(folder, cluster, tmp_path):
    common = ['--data', folder, '--figures', 'none', '--threads', 1]          # one network thread per process on both sides
    code, _, err = run_script('nuclei_predict', *common, '--out', tmp_path / 'local')
    assert code == 0, err
    code, stdout, err = run_script('nuclei_predict', *common, '--out', tmp_path / 'cluster', '--scheduler', cluster.scheduler_address)
    assert code == 0, err
    assert f'{N_IMAGES} images predicted' in stdout
    local, remote = outputs(tmp_path / 'local'), outputs(tmp_path / 'cluster')
    assert len(local) == N_IMAGES and local == remote                        # byte for byte
    assert (tmp_path / 'local' / 'run.json').read_text() == (tmp_path / 'cluster' / 'run.json').read_text()
    code, stdout, _ = run_script('nuclei_predict', *common, '--out', tmp_path / 'cluster', '--scheduler', cluster.scheduler_address)
    assert code == 0 and f'0 images predicted, {N_IMAGES} already done' in stdout


def test_killed_worker_images_are_done_elsewhere(folder, cluster, tmp_path):
    from distributed import Client
    with Client(cluster.scheduler_address) as client: pids = client.run(os.getpid)
    out = tmp_path / 'out'
    killed = []
    def kill_one_after_first_output():
        deadline = time.time() + 300
        while time.time() < deadline and not any((out / 'labels').glob('*.png')): time.sleep(0.02)
        pid = sorted(pids.values())[0]
        os.kill(pid, signal.SIGKILL); killed.append(pid)
    watcher = threading.Thread(target=kill_one_after_first_output, daemon=True)
    watcher.start()
    code, stdout, err = run_script('nuclei_predict', '--data', folder, '--figures', 'none', '--threads', 1, '--out', out, '--scheduler', cluster.scheduler_address)
    watcher.join(5)
    assert killed and code == 0, (stdout, err)
    labels = sorted(p.name for p in (out / 'labels').iterdir())
    assert labels == sorted(f'{s.id}.png' for s in list_samples(folder))      # every image once, no temporaries
    rows = (out / 'summary.csv').read_text().splitlines()[1:]
    assert len(rows) == N_IMAGES


def test_scheduler_that_does_not_answer(tmp_path):
    t = time.time()
    result = run_script('nuclei_predict', '--scheduler', 'tcp://127.0.0.1:9', '--out', tmp_path / 'out')
    assert time.time() - t < 30
    assert_one_line_error(result, 'nuclei_predict', '--scheduler', 'tcp://127.0.0.1:9', 'no Dask scheduler answered')


def test_a_web_server_is_not_taken_for_a_scheduler(tmp_path):
    "The dashboard's port (a web server) given by mistake: one line within seconds, not a wait for ever."
    from http.server import HTTPServer, SimpleHTTPRequestHandler
    with HTTPServer(('127.0.0.1', 0), SimpleHTTPRequestHandler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        address = f'tcp://127.0.0.1:{web.server_address[1]}'
        result = run_script('nuclei_predict', '--scheduler', address, '--out', tmp_path / 'out', timeout=120)
        web.shutdown()
    assert_one_line_error(result, 'nuclei_predict', '--scheduler', address, 'no Dask scheduler answered', 'dashboard on 8787')


def test_relative_paths_reach_workers_in_another_folder(folder, cluster, tmp_path):
    "--data and --out relative to the command's folder work on workers started elsewhere (here: the test's folder)."
    code, _, err = run_script('nuclei_predict', '--data', os.path.relpath(folder, tmp_path), '--figures', 'none', '--threads', 1, '--out', 'out',
                              '--scheduler', cluster.scheduler_address, cwd=tmp_path)
    assert code == 0, err
    assert len(list((tmp_path / 'out' / 'labels').glob('*.png'))) == N_IMAGES


def test_image_that_kills_its_workers_is_reported_and_redone_by_a_rerun(folder, tmp_path):
    "With no retries allowed, the images a killed worker held fail with one line each naming the file, the others are written, exit 1; a rerun does the rest."
    distributed = pytest.importorskip('distributed')
    import dask
    with dask.config.set({'distributed.scheduler.allowed-failures': 0}), \
         distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host='127.0.0.1', dashboard_address=None) as cluster, \
         distributed.Client(cluster.scheduler_address) as client:
        out, killed = tmp_path / 'out', []
        def kill_a_busy_worker():
            deadline = time.time() + 300
            while time.time() < deadline and not any((out / 'labels').glob('*.png')): time.sleep(0.02)
            while time.time() < deadline:                                      # a worker holding an image, so that image fails
                busy = [w for w, keys in client.processing().items() if keys]
                if busy: break
                time.sleep(0.02)
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL); killed.append(pid)
        watcher = threading.Thread(target=kill_a_busy_worker, daemon=True)
        watcher.start()
        common = ['--data', folder, '--figures', 'none', '--threads', 1, '--out', out, '--scheduler', cluster.scheduler_address]
        code, stdout, err = run_script('nuclei_predict', *common)
        watcher.join(5)
        lines = [line for line in err.splitlines() if line.startswith('nuclei_predict: ')]   # Dask's own log lines may come too
        assert killed and code == 1 and lines, (stdout, err)
        images = {str(s.image) for s in list_samples(folder)}
        for line in lines:
            assert line.startswith('nuclei_predict: skipped ') and 'Dask workers that predicted it died' in line, err
            assert any(i in line for i in images), line
        assert len(list((out / 'labels').iterdir())) == N_IMAGES - len(lines)
        code, stdout, err = run_script('nuclei_predict', *common)
        assert code == 0, err
        assert f'{len(lines)} images predicted, {N_IMAGES - len(lines)} already done' in stdout
        assert len(list((out / 'labels').iterdir())) == N_IMAGES
