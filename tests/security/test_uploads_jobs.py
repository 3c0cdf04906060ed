"""Attacks on uploads and jobs, against the real services.

A real collector and inference service (processes, as in production) on the local Kafka and S3
server, on topics of their own. The attacker holds the public browser write key, as anyone can.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from minio.error import S3Error

from funnelstream.settings import KafkaConfig, ObjectStoreConfig
from ops.sample_images import sample_mask_png, sample_png
from tests.helpers.raw_http import stream_body
from tests.helpers.uploads_jobs import (
    KEY,
    MIB,
    Services,
    flat_png,
    job_message,
    job_request,
    peak_rss_bytes,
    pid_of,
    post_form,
    produce_job,
    running_services,
    upload,
    wait_for_job,
)

MAX_UPLOAD_BYTES = 256 * 1024
JSON = {"Content-Type": "application/json"}
LIMITS = {
    "FS_INGEST__MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    "FS_INFERENCE__MAX_INPUT_BYTES": str(MAX_UPLOAD_BYTES),
}


@pytest.fixture(scope="module")
def services(kafka: KafkaConfig, s3: ObjectStoreConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    workdir: Path = tmp_path_factory.mktemp("uploads-jobs")
    with running_services(workdir, kafka, s3, inference=True, env=LIMITS) as running:
        yield running


@pytest.fixture(scope="module")
def client(services: Services) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=services.ingest_url, headers=KEY, timeout=60) as http:
        yield http


def _errors(response: httpx.Response) -> list[str]:
    return [str(error["field"]) for error in response.json().get("errors", [])]


# --- item 5: jobs hijack -----------------------------------------------------------------------------


def test_a_victims_job_id_cannot_be_taken_to_overwrite_its_result(client: httpx.Client) -> None:
    victim = upload(client, "victim-device", sample_png(64, 48, seed=1))
    accepted = client.post("/v1/jobs", json=job_request(victim, "victim-device"))
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    done = wait_for_job(client, job_id)
    assert done["status"] == "succeeded" and done["input_id"] == victim["input_id"], done
    result = httpx.get(done["result_url"]).content

    attacker = upload(client, "attacker-device", sample_png(64, 48, seed=2))
    hijack = client.post("/v1/jobs", json={**job_request(attacker, "attacker-device"), "job_id": job_id})
    assert hijack.status_code == 422 and _errors(hijack) == ["job_id"], hijack.text
    after = client.get(f"/v1/jobs/{job_id}").json()
    assert after["input_id"] == victim["input_id"] and httpx.get(after["result_url"]).content == result


def test_a_job_on_another_devices_input_is_refused(client: httpx.Client) -> None:
    victim = upload(client, "victim-device", sample_png(64, 48, seed=3))
    own = upload(client, "attacker-device", sample_png(64, 48, seed=4))
    without_token = {k: v for k, v in job_request(victim, "attacker-device").items() if k != "input_token"}
    refused = client.post("/v1/jobs", json=without_token)
    assert refused.status_code == 422 and _errors(refused) == ["input_token"], refused.text
    for anonymous_id, token in [
        ("attacker-device", own["upload_token"]),  # a token of the attacker's own upload
        ("victim-device", own["upload_token"]),  # posing as the victim's device
        ("attacker-device", "A" * 43),  # a made-up token
    ]:
        request = {**job_request(victim, anonymous_id), "input_token": token}
        refused = client.post("/v1/jobs", json=request)
        assert refused.status_code == 403 and _errors(refused) == ["input_token"], refused.text


def test_a_mask_must_be_an_upload_of_the_same_device(client: httpx.Client) -> None:
    image = upload(client, "masking-device", sample_png(64, 48, seed=5))
    done = wait_for_job(client, client.post("/v1/jobs", json=job_request(image, "masking-device")).json()["job_id"])
    result_key = "results/" + done["result_url"].split("/results/", 1)[1].split("?", 1)[0]
    victims_mask = upload(client, "victim-device", sample_mask_png(64, 48))
    remove = {"inference_id": 1, "inference_name": "remove_object"}
    attempts = {
        # Another object in the bucket (someone's result): not an upload key at all.
        "mask_key": {"mask_key": result_key, "mask_token": image["upload_token"]},
        # Another device's uploaded mask, with its real token: bound to that device.
        "mask_token": {"mask_key": victims_mask["input_key"], "mask_token": victims_mask["upload_token"]},
    }
    for field, mask in attempts.items():
        refused = client.post("/v1/jobs", json=job_request(image, "masking-device", **remove, **mask))
        assert refused.status_code in (403, 422) and _errors(refused) == [field], refused.text
    own_mask = upload(client, "masking-device", sample_mask_png(64, 48))
    request = job_request(image, "masking-device", **remove, mask_key=own_mask["input_key"])
    accepted = client.post("/v1/jobs", json={**request, "mask_token": own_mask["upload_token"]})
    assert accepted.status_code == 202, accepted.text
    assert wait_for_job(client, accepted.json()["job_id"])["status"] == "succeeded"


def test_an_input_posted_over_after_its_job_was_accepted_is_not_used(
    client: httpx.Client, services: Services, kafka: KafkaConfig, minio_client: Any, s3: ObjectStoreConfig
) -> None:
    ticket = upload(client, "swap-device", sample_png(64, 48, seed=8))
    checked = minio_client.stat_object(s3.bucket, ticket["input_key"]).etag
    accepted = client.post("/v1/jobs", json=job_request(ticket, "swap-device"))
    assert accepted.status_code == 202, accepted.text
    job = job_message(kafka, services.jobs_topic, accepted.json()["job_id"])
    assert job["input_etag"] == checked
    # The policy admits more posts to its key while it lasts, and this server lets them overwrite.
    assert post_form(ticket, flat_png(3000, 3000), "image/png").status_code == 204
    assert minio_client.stat_object(s3.bucket, ticket["input_key"]).etag != checked
    # The same job reaching the worker after the swap (as one queued behind others would).
    late = {**job, "job_id": str(uuid.uuid4())}
    produce_job(kafka, services.jobs_topic, late)
    state = wait_for_job(client, late["job_id"])
    assert state["status"] == "failed" and "replaced after the job was accepted" in state["error"], state


def test_a_job_on_an_input_not_uploaded_yet_is_refused(client: httpx.Client) -> None:
    ticket = client.post("/v1/uploads", json={"content_type": "image/png", "anonymous_id": "early-device"}).json()
    refused = client.post("/v1/jobs", json=job_request(ticket, "early-device"))
    assert refused.status_code == 422 and _errors(refused) == ["input_key"], refused.text


# --- item 6: body limits, key first -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/uploads"])
def test_a_300_mib_body_is_refused_before_it_is_read(services: Services, path: str) -> None:
    pid = pid_of(services.ingest)
    size = 300 * MIB
    before = peak_rss_bytes(pid)
    without_key = stream_body(services.ingest_url, path, size, {})
    with_key = stream_body(services.ingest_url, path, size, KEY)
    chunked = stream_body(services.ingest_url, path, size, KEY, chunked=True)
    grown = peak_rss_bytes(pid) - before
    assert without_key.status == 401, without_key
    assert with_key.status == 413, with_key
    assert chunked.status == 413, chunked
    assert grown < 32 * MIB, f"the collector's peak memory grew by {grown / MIB:.0f} MiB"


# --- item 7 (jobs): no 5xx, fields bounded and named ---------------------------------------------------


def test_oversized_job_fields_are_refused_and_named(client: httpx.Client) -> None:
    ticket = upload(client, "params-device", sample_png(64, 48, seed=6))
    job = job_request(ticket, "params-device")
    large = client.post("/v1/jobs", json={**job, "params": {"blob": "x" * 1_200_000}})
    assert large.status_code == 413, large.text
    deep: Any = 1
    for _ in range(200):
        deep = {"d": deep}
    cases = {
        "params": {"params": {f"p{i}": i for i in range(100)}},
        "params.d": {"params": deep},
        "params.s": {"params": {"s": "x" * 1000}},
        "points": {"points": [[1, 1]] * 1000},
        "box": {"box": [0, 0, 1e308 * 10, 1]},
    }
    for field, change in cases.items():
        refused = client.post("/v1/jobs", content=orjson.dumps({**job, **change}), headers=JSON)
        assert refused.status_code == 422, (field, refused.text)
        assert any(name.startswith(field) for name in _errors(refused)), (field, refused.text)


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
JOB_FIELDS = [
    "kind", "input_id", "input_key", "input_token", "anonymous_id", "user_id", "event_id", "client_ts",
    "inference_id", "inference_name", "mask_key", "mask_token", "points", "box", "params", "experiments", "job_id",
]  # fmt: skip


@st.composite
def mutated_bodies(draw: st.DrawFn, valid_job: dict[str, Any]) -> tuple[str, Any]:
    """A valid job or upload request with a few fields replaced by arbitrary JSON or removed."""
    path = draw(st.sampled_from(["/v1/jobs", "/v1/uploads"]))
    body: Any = dict(valid_job) if path == "/v1/jobs" else {"content_type": "image/png", "anonymous_id": "fuzz"}
    fields = JOB_FIELDS if path == "/v1/jobs" else ["content_type", "anonymous_id", "extra"]
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(fields))
        if draw(st.booleans()):
            body.pop(field, None)
        else:
            body[field] = draw(JSON_VALUES)
    if draw(st.integers(0, 15)) == 0:
        body = draw(JSON_VALUES)
    return path, body


@pytest.fixture(scope="module")
def valid_job(client: httpx.Client) -> dict[str, Any]:
    ticket = upload(client, "fuzz-device", sample_png(32, 24, seed=7))
    return job_request(ticket, "fuzz-device", kind="segment", inference_id=None, inference_name=None)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_no_job_or_upload_body_gets_a_5xx(client: httpx.Client, valid_job: dict[str, Any], data: st.DataObject) -> None:
    path, body = data.draw(mutated_bodies(valid_job))
    response = client.post(path, content=orjson.dumps(body), headers=JSON)
    assert response.status_code < 500, (path, body, response.text)
    if response.status_code >= 400 and response.status_code not in (413, 429):
        assert response.json()["errors"] or response.status_code == 401, response.text


# --- item 8: upload policy, stored-object checks, pixel limits -------------------------------------------


def test_the_upload_policy_fixes_key_type_and_size(
    client: httpx.Client, minio_client: Any, s3: ObjectStoreConfig
) -> None:
    ticket = client.post("/v1/uploads", json={"content_type": "image/png", "anonymous_id": "policy-device"}).json()
    key = ticket["input_key"]
    html = post_form(ticket, b"<script>alert(1)</script>", "text/html", **{"Content-Type": "text/html"})
    assert html.status_code == 403, html.text
    too_large = post_form(ticket, b"\x89PNG" + bytes(MAX_UPLOAD_BYTES), "image/png")
    assert too_large.status_code == 400 and "EntityTooLarge" in too_large.text, too_large.text
    elsewhere = post_form(ticket, sample_png(8, 8, seed=1), "image/png", key=f"inputs/elsewhere/{uuid.uuid4()}.png")
    assert elsewhere.status_code == 403, elsewhere.text
    # A PUT, as the old presigned URLs took: the policy's signature signs no PUT.
    put = httpx.put(f"{ticket['upload_url']}/{key}", content=b"<html></html>", headers={"Content-Type": "text/html"})
    assert put.status_code == 403, put.text
    with pytest.raises(S3Error):
        minio_client.stat_object(s3.bucket, key)
    image = sample_png(16, 12, seed=2)
    assert post_form(ticket, image, "image/png").status_code == 204
    stored = minio_client.stat_object(s3.bucket, key)
    assert stored.content_type == "image/png" and stored.size == len(image)


def test_a_small_png_of_a_huge_image_fails_its_enhance_without_the_memory(
    client: httpx.Client, services: Services
) -> None:
    assert services.inference is not None
    pid = pid_of(services.inference)
    body = flat_png(3162, 3162)
    assert len(body) < 64 * 1024
    ticket = upload(client, "bomb-device", body)
    before = peak_rss_bytes(pid)
    enhance = {"inference_id": 2, "inference_name": "enhance", "params": {"scale": 4}}
    accepted = client.post("/v1/jobs", json=job_request(ticket, "bomb-device", **enhance))
    assert accepted.status_code == 202, accepted.text
    state = wait_for_job(client, accepted.json()["job_id"])
    grown = peak_rss_bytes(pid) - before
    assert state["status"] == "failed", state
    assert state["error"].startswith("params.scale:") and "output limit" in state["error"], state
    assert grown < 100 * MIB, f"the inference service's peak memory grew by {grown / MIB:.0f} MiB"

    huge = upload(client, "bomb-device", flat_png(5000, 4000))
    state = wait_for_job(client, client.post("/v1/jobs", json=job_request(huge, "bomb-device")).json()["job_id"])
    assert state["status"] == "failed" and state["error"].startswith("input_key:"), state
    assert "exceeds the limit" in state["error"], state


@pytest.mark.parametrize(
    ("content_type", "body", "refused_by", "reason"),
    [
        ("text/html", b"<html><script>alert(1)</script></html>", "collector", "stored as 'text/html'"),
        ("image/png", b"\x89PNG" + bytes(MAX_UPLOAD_BYTES + 1), "collector", f"at most {MAX_UPLOAD_BYTES} bytes"),
        ("image/jpeg", sample_png(16, 12, seed=3), "collector", "stored as 'image/jpeg'"),
        ("image/png", b"<html><script>alert(1)</script></html>", "inference", "not a readable image"),
        ("image/png", b"GIF89a" + bytes(64), "inference", "not a readable image"),
    ],
)
def test_a_stored_object_is_checked_before_a_job_uses_it(
    client: httpx.Client,
    minio_client: Any,
    s3: ObjectStoreConfig,
    content_type: str,
    body: bytes,
    refused_by: str,
    reason: str,
) -> None:
    """As if the store had not enforced the policy: the object under an upload's key is put directly.

    The collector refuses at submit what the object's metadata shows (type, size); the inference
    service fails a job whose bytes are not the image their type claims, before decoding them.
    """
    ticket = client.post("/v1/uploads", json={"content_type": "image/png", "anonymous_id": "store-device"}).json()
    minio_client.put_object(s3.bucket, ticket["input_key"], io.BytesIO(body), len(body), content_type=content_type)
    answer = client.post("/v1/jobs", json=job_request(ticket, "store-device"))
    if refused_by == "collector":
        assert answer.status_code == 422 and _errors(answer) == ["input_key"], answer.text
        assert reason in answer.json()["errors"][0]["reason"], answer.text
        return
    assert answer.status_code == 202, answer.text
    state = wait_for_job(client, answer.json()["job_id"])
    assert state["status"] == "failed" and state["error"].startswith("input_key:"), state
    assert reason in state["error"], state
