"""The selector checks of exporter/kube/selectors.py agree with a REAL kube-apiserver.

``--check-config`` refuses a kubernetes.field_selector / label_selector because the
apiserver would answer every LIST and WATCH with 400 (and the exporter would retry
forever). Here the apiserver itself is asked, for every Event field the check accepts
(per API version), and for tricky syntax both ways: our verdict must be the server's.
"""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from exporter.kube.selectors import EVENT_FIELDS, field_selector_problems, label_selector_problems

pytestmark = pytest.mark.real

PATHS = {"v1": "/api/v1/events", "events.k8s.io/v1": "/apis/events.k8s.io/v1/events"}


def server_accepts(cp, api: str, **query: str) -> bool:
    status, body = cp.request("GET", f"{PATHS[api]}?{urlencode({'limit': '1', **query})}")
    assert status in (200, 400), (status, body[:300])
    return status == 200


@pytest.mark.parametrize("api", sorted(PATHS))
def test_every_field_we_accept_the_apiserver_accepts_and_no_other(control_plane, api):
    for field in sorted(EVENT_FIELDS[api]):
        assert field_selector_problems(f"{field}=x", api) == []
        assert server_accepts(control_plane, api, fieldSelector=f"{field}=x"), (api, field)
    other = next(a for a in PATHS if a != api)
    refused = [f"{f}=x" for f in sorted(EVENT_FIELDS[other] - EVENT_FIELDS[api])]
    for selector in refused + ["type!!=Normal", "type =Normal", "spec.foo=x", "count=1", "deprecatedSource=x"]:
        assert field_selector_problems(selector, api), (api, selector)
        assert not server_accepts(control_plane, api, fieldSelector=selector), (api, selector)


FIELD_SYNTAX = ["type!=Normal", "type==Normal", "type=Normal,reason=BackOff", "type!!=Normal", "type", "=Normal",
                "reason=a=b", "reason=a\\=b", "reason=a\\,b", "reason=a\\x", "reason=a\\", ",type=Normal,",
                "type=", "type!=Normal,,reason!=X", "type= Normal", "reason=a b", "type!=", "type=!Normal"]
LABEL_SYNTAX = ["app=web", "app==web", "app!=web", "app", "!app", "app in (a,b)", "app notin (a, b)",
                "app in ()", "app in (a", "app=a b", "-app=x", "app=-x", "example.com/app=x", "Example.com/app=x",
                "a/b/c=x", "tier>3", "tier<x", "app=" + "x" * 64, "app=web,,tier=x", "app=web, !canary",
                "app in (a,b),tier", "app=web tier=x", "app in (a,)", "!app=x", "app = web", " app=web ",
                "app=web,", "x/=y", "app in(a)", "app notin(a)", "tier > 3", "tier>-3", "app=a.b_c-d", "app=a.",
                "app!", "app in (a b)"]


@pytest.mark.parametrize("selector", FIELD_SYNTAX)
def test_field_selector_syntax_verdict_is_the_apiservers(control_plane, selector):
    ours = field_selector_problems(selector, "v1") == []
    assert ours == server_accepts(control_plane, "v1", fieldSelector=selector), selector


@pytest.mark.parametrize("selector", LABEL_SYNTAX)
def test_label_selector_syntax_verdict_is_the_apiservers(control_plane, selector):
    ours = label_selector_problems(selector) == []
    assert ours == server_accepts(control_plane, "v1", labelSelector=selector), selector
