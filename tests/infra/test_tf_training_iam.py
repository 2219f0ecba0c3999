"""Who may launch Vertex AI training as the training service account, and what that account may do:
modules/iam as the root module wires it, applied by real terraform (test_tf_contract's fixture)."""

from __future__ import annotations

from test_tf_contract import DATA, DATAFLOW, LAUNCHER, MODELS, PROJECT, PUBLISHER, wired_access

__all__ = ["wired_access"]  # the fixture, imported so pytest finds it here

ACT_AS_TRAINING = "service_account:training roles/iam.serviceAccountUser"


def test_launchers_may_submit_custom_jobs_as_the_training_account(wired_access):
    assert f"{PROJECT} roles/aiplatform.user" in wired_access[LAUNCHER]
    assert ACT_AS_TRAINING in wired_access[LAUNCHER]
    # Nobody else may run code as the model publisher.
    holders = {who for who, grants in wired_access.items() if ACT_AS_TRAINING in grants}
    assert holders == {LAUNCHER}
    assert PUBLISHER not in holders and "worker" not in holders


def test_the_training_account_reads_data_writes_models_and_nothing_more(wired_access):
    training = set(wired_access["training"])
    # Shards and the staged code wheel are on the data bucket; outputs, logs and the export on models.
    assert f"{DATA} roles/storage.objectViewer" in training and f"{MODELS} roles/storage.objectUser" in training
    assert not [g for g in training if g.startswith(DATAFLOW) or "aiplatform" in g or "serviceAccount" in g]
    # The launcher, who stages the wheel there, may write the data bucket.
    assert f"{DATA} roles/storage.objectUser" in wired_access[LAUNCHER]
