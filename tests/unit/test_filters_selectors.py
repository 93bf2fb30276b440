"""Users filter the way kubectl taught them: field selectors and simple lists."""
import pytest

from exporter.transforms.filters import FilterError, build, parse_field_selector

R = {"type": "Warning", "reason": "BackOff", "object": {"kind": "Pod", "name": "web-1"},
     "event": {"namespace": "shop"}, "source_component": "kubelet", "reporting_controller": "kubelet"}


def test_kubectl_field_selector_equal_and_not_equal():
    assert build(field_selector="type!=Normal,reason=BackOff")(R)
    assert not build(field_selector="type!=Normal,reason=Evicted")(R)
    assert build(field_selector="involvedObject.kind==Pod,regarding.name=web-1")(R)
    assert not build(field_selector="metadata.namespace=other")(R)


def test_missing_field_compares_as_empty_string():
    assert build(field_selector="action=")(R)
    assert build(field_selector="action!=x")(R)


def test_lists_include_and_exclude():
    assert build(types=["Warning"], namespaces=["shop"], kinds=["Pod"], names=["web-1"])(R)
    assert not build(exclude_reasons=["BackOff"])(R)
    assert not build(exclude_namespaces=["shop"])(R)
    assert build() is None


@pytest.mark.parametrize("bad,needle", [("type", "no '='"), ("colour=red", "unknown field 'colour'")])
def test_bad_selector_names_the_problem(bad, needle):
    with pytest.raises(FilterError, match=needle):
        parse_field_selector(bad)
