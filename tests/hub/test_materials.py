"""Materials: stored with their SHA-256, limited in size and type, only from the item's list."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from tests.support import ITEM_KEYS, submit

KEY = "physician-practice-registration"
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def upload(client: TestClient, receipt: dict, key: str, content: bytes, content_type: str = "application/pdf"):
    return client.post(
        f"/api/v1/applications/{receipt['tracking_no']}/materials",
        data={"key": key}, files={"file": ("证明.pdf", content, content_type)},
        headers={"X-Query-Code": receipt["query_code"]},
    )


def material_key() -> str:
    return ITEM_KEYS[KEY]["materials"][0]["key"]


def test_upload_stores_sha256_and_shows_in_status(client: TestClient, settings) -> None:
    receipt = submit(client, KEY)
    response = upload(client, receipt, material_key(), PDF)
    assert response.status_code == 201, response.text
    digest = hashlib.sha256(PDF).hexdigest()
    assert response.json()["sha256"] == digest
    assert (settings.materials_dir / digest[:2] / digest).read_bytes() == PDF
    status = client.get(f"/api/v1/applications/{receipt['tracking_no']}",
                        headers={"X-Query-Code": receipt["query_code"]}).json()
    assert [m["sha256"] for m in status["materials"]] == [digest]


def test_upload_of_unlisted_material_names_the_field(client: TestClient) -> None:
    response = upload(client, submit(client, KEY), "not_in_list", PDF)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "key"


def test_content_must_match_declared_type(client: TestClient) -> None:
    response = upload(client, submit(client, KEY), material_key(), b"MZ\x90\x00 not a pdf")
    assert response.status_code == 422
    assert response.json()["errors"][0]["rule"] == "content_matches_type"


def test_unsupported_type_is_415(client: TestClient) -> None:
    response = upload(client, submit(client, KEY), material_key(), b"hello", "text/plain")
    assert response.status_code == 415


def test_oversized_file_is_413(client: TestClient, settings) -> None:
    receipt = submit(client, KEY)
    big = b"%PDF-" + b"0" * settings.max_material_bytes
    assert upload(client, receipt, material_key(), big).status_code == 413


def test_two_replicas_storing_the_same_file_on_one_volume_both_succeed(client: TestClient, settings,
                                                                     monkeypatch) -> None:
    """Replicas share the materials volume (docker-compose.yml `hub-data`), and each container's process may
    have the same pid: while this upload is about to rename its file into place, another replica stores the
    same content. Both answers are 201, the file is whole, no temporary file is left."""
    import os

    from hub.cases import materials

    content = PDF + b"shared by two replicas\n"
    digest = hashlib.sha256(content).hexdigest()
    original_replace = os.replace
    interleaved: list[str] = []

    def replace_after_another_replica(source, target, *args, **kwargs):
        if str(target).startswith(str(settings.materials_dir)) and not interleaved:
            interleaved.append(str(source))
            materials._store(settings.materials_dir, digest, content)  # the other replica, same pid
        return original_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace_after_another_replica)
    receipt = submit(client, KEY)
    response = upload(client, receipt, material_key(), content)
    monkeypatch.undo()

    assert interleaved, "the upload did not store a file"
    assert response.status_code == 201, response.text
    folder = settings.materials_dir / digest[:2]
    assert (folder / digest).read_bytes() == content
    assert [p.name for p in folder.iterdir()] == [digest]


def test_a_truncated_stored_file_is_written_again(client: TestClient, settings) -> None:
    """A file cut short (a crash on a volume that lost its tail) is not taken for the material."""
    content = PDF + b"written again\n"
    digest = hashlib.sha256(content).hexdigest()
    target = settings.materials_dir / digest[:2] / digest
    target.parent.mkdir(parents=True)
    target.write_bytes(content[:5])
    response = upload(client, submit(client, KEY), material_key(), content)
    assert response.status_code == 201, response.text
    assert target.read_bytes() == content
