"""The test Hub itself, driven through huggingface_hub: the parts publishing tests rely on
without exercising every corner (pagination, ranges, refs, visibility, merges)."""

import httpx2
import pytest
from hub_server import USERS
from huggingface_hub import CommitOperationAdd, HfApi, HfFileSystem
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

REPO = "alice/fixture"


@pytest.fixture
def api(hub) -> HfApi:
    api = HfApi(token=USERS["alice"])
    api.create_repo(REPO, repo_type="dataset")
    return api


def commit(api: HfApi, files: dict[str, bytes], **kwargs):
    operations = [CommitOperationAdd(path, data) for path, data in files.items()]
    return api.create_commit(REPO, operations, commit_message="test", repo_type="dataset", **kwargs)


def test_tree_listing_follows_pagination(hub, api):
    commit(api, {f"data/f{i}.txt": b"%d" % i for i in range(5)})
    hub.tree_page_size = 2

    listed = [entry.path for entry in api.list_repo_tree(REPO, repo_type="dataset", recursive=True)]

    assert listed == [".gitattributes", "data"] + [f"data/f{i}.txt" for i in range(5)]
    assert hub.count("tree") == 4


def test_resolve_serves_byte_ranges_and_lfs_headers(hub, api):
    data = bytes(range(256)) * 40
    commit(api, {"blob.bin": data})
    url = f"{hub.url}/datasets/{REPO}/resolve/main/blob.bin"

    head = httpx2.head(url)
    suffix = httpx2.get(url, headers={"Range": "bytes=-6"})
    beyond = httpx2.get(url, headers={"Range": f"bytes={len(data)}-"})
    with HfFileSystem().open(f"datasets/{REPO}/blob.bin", "rb", block_size=100) as remote:
        remote.seek(1000)
        middle = remote.read(300)

    assert head.headers["X-Repo-Commit"] == hub.head(REPO)
    assert head.headers["X-Linked-Size"] == str(len(data))
    assert head.headers["X-Linked-Etag"].strip('"') in hub.lfs_uploads
    assert (suffix.status_code, suffix.content) == (206, data[-6:])
    assert beyond.status_code == 416
    assert middle == data[1000:1300]


def test_branches_tags_and_commit_listing(api):
    first = commit(api, {"a.txt": b"a"})
    api.create_branch(REPO, repo_type="dataset", branch="dev")
    commit(api, {"b.txt": b"b"}, revision="dev")
    api.create_tag(REPO, repo_type="dataset", tag="v1", revision=first.oid)

    refs = api.list_repo_refs(REPO, repo_type="dataset")

    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", first.oid)]
    assert [c.title for c in api.list_repo_commits(REPO, repo_type="dataset", revision="dev")] == [
        "test", "test", "initial commit"]
    api.delete_branch(REPO, repo_type="dataset", branch="dev")
    assert [b.name for b in api.list_repo_refs(REPO, repo_type="dataset").branches] == ["main"]


def test_private_repos_look_missing_to_others_and_bad_tokens_are_rejected(hub, api):
    api.create_repo("alice/secret", repo_type="dataset", private=True)

    assert api.repo_info("alice/secret", repo_type="dataset").private
    for token in (False, USERS["bob"]):
        with pytest.raises(RepositoryNotFoundError):
            HfApi(token=token).repo_info("alice/secret", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as invalid:
        HfApi(token="hf_not_a_token").repo_info(REPO, repo_type="dataset")
    assert invalid.value.response.status_code == 401


def test_a_stale_parent_commit_is_refused_with_412(api):
    start = api.repo_info(REPO, repo_type="dataset").sha
    commit(api, {"a.txt": b"a"}, parent_commit=start)

    with pytest.raises(HfHubHTTPError) as refused:
        commit(api, {"b.txt": b"b"}, parent_commit=start)

    assert refused.value.response.status_code == 412


def test_merging_a_pull_request_replays_it_on_a_moved_base_unless_it_conflicts(hub, api):
    pr = commit(api, {"pr.txt": b"pr", "shared.txt": b"from the PR"}, create_pr=True)
    commit(api, {"main.txt": b"main"})

    api.merge_pull_request(REPO, pr.pr_num, repo_type="dataset")
    conflicting = commit(api, {"shared.txt": b"PR again"}, create_pr=True)
    commit(api, {"shared.txt": b"main again"})

    assert {"pr.txt", "main.txt", "shared.txt"} <= set(hub.files(REPO))
    with pytest.raises(HfHubHTTPError) as conflict:
        api.merge_pull_request(REPO, conflicting.pr_num, repo_type="dataset")
    assert conflict.value.response.status_code == 409
    assert hub.files(REPO)["shared.txt"] == b"main again"
