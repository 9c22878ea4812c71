"""The query-string parsers: q (4.9), type expressions, scopeQ (4.19), orderBy (4.23), pick/omit
(4.21) and geo-queries (4.10). Table-driven cases, error details, and hypothesis properties."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from citytwin.errors import BadRequestData
from citytwin.model.geo import GeoQuery, haversine, parse_geo_query
from citytwin.model.projection import Projection, parse_projection
from citytwin.model.query import (
    All,
    Any_,
    Node,
    OrderKey,
    Path,
    Range,
    Term,
    parse_order_by,
    parse_q,
    parse_scope_q,
    parse_types,
    scope_regex,
)
from tests.strategies import mutated

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)


def typed(value: Any) -> Any:
    """A node or value with every scalar tagged by its type: 1, 1.0 and True differ."""
    if isinstance(value, Term):
        return ("term", value.path, value.op, typed(value.value))
    if isinstance(value, All):
        return ("all", tuple(typed(p) for p in value.parts))
    if isinstance(value, Any_):
        return ("any", tuple(typed(p) for p in value.parts))
    if isinstance(value, Range):
        return ("range", typed(value.low), typed(value.high))
    if isinstance(value, tuple):
        return ("list", tuple(typed(v) for v in value))
    return (type(value).__name__, value)


def t(attr: str, op: str | None = None, value: Any = None, sub: tuple = (), keys: tuple = ()):
    return Term(Path(attr, sub, keys), op, value)


def bad(call: Any, *args: Any) -> str:
    with pytest.raises(BadRequestData) as caught:
        call(*args)
    return caught.value.detail


def refused(call: Any, *args: Any) -> str:
    """The BadRequestData detail; any other exception fails with a one-line message (a deep
    RecursionError traceback would take pytest seconds to render)."""
    try:
        call(*args)
    except BadRequestData as exc:
        return exc.detail
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__} instead of BadRequestData") from None
    raise AssertionError("accepted")


# -- q ---------------------------------------------------------------------------------------------

Q_CASES = [
    # operators
    ("a==1", t("a", "==", 1)),
    ("a!=1", t("a", "!=", 1)),
    ("a>1", t("a", ">", 1)),
    ("a>=1", t("a", ">=", 1)),
    ("a<1", t("a", "<", 1)),
    ("a<=1", t("a", "<=", 1)),
    ("a~=^ab.*$", t("a", "~=", "^ab.*$")),
    ("a!~=x+", t("a", "!~=", "x+")),
    ('a~="^Bund"', t("a", "~=", "^Bund")),
    # numbers
    ("a==-2", t("a", "==", -2)),
    ("a==-2.5", t("a", "==", -2.5)),
    ("a==0.125", t("a", "==", 0.125)),
    ("a==1.0", t("a", "==", 1.0)),
    ("a>=1e3", t("a", ">=", 1000.0)),
    ("a<1.5E-2", t("a", "<", 0.015)),
    ("a==007", t("a", "==", 7)),
    # booleans, and words that only look like them
    ("a==true", t("a", "==", True)),
    ("a==false", t("a", "==", False)),
    ("a==True", t("a", "==", "True")),
    ('a=="true"', t("a", "==", "true")),
    ('a=="1"', t("a", "==", "1")),
    # quoted strings and escapes
    ('a=="Jin Mao Tower"', t("a", "==", "Jin Mao Tower")),
    ('a==""', t("a", "==", "")),
    (r'a=="say \"hi\""', t("a", "==", 'say "hi"')),
    (r'a=="back\\slash"', t("a", "==", "back\\slash")),
    ('a=="x;y|z)"', t("a", "==", "x;y|z)")),
    ('a=="1..2"', t("a", "==", "1..2")),
    ('a=="金茂大厦"', t("a", "==", "金茂大厦")),
    # unquoted DateTimes and URIs are text
    ("a.observedAt>=2024-05-01T08:00:00Z", t("a", ">=", "2024-05-01T08:00:00Z", ("observedAt",))),
    ("a<2024-05-01T08:00:00.000Z", t("a", "<", "2024-05-01T08:00:00.000Z")),
    ("a==2024-05-01", t("a", "==", "2024-05-01")),
    (
        "refBuilding==urn:ngsi-ld:Building:JinMao",
        t("refBuilding", "==", "urn:ngsi-ld:Building:JinMao"),
    ),
    ("a==https://example.org/x?y=1", t("a", "==", "https://example.org/x?y=1")),
    # ranges and lists
    ("a==1..5", t("a", "==", Range(1, 5))),
    ("a!=-5..-1", t("a", "!=", Range(-5, -1))),
    ("a==1.5..2.5", t("a", "==", Range(1.5, 2.5))),
    ('a=="A".."M"', t("a", "==", Range("A", "M"))),
    (
        "a==2024-01-01T00:00:00Z..2024-12-31T00:00:00Z",
        t("a", "==", Range("2024-01-01T00:00:00Z", "2024-12-31T00:00:00Z")),
    ),
    ("a==1,2,3", t("a", "==", (1, 2, 3))),
    ('a!=1,"x",true', t("a", "!=", (1, "x", True))),
    ("a==urn:x:1,urn:x:2", t("a", "==", ("urn:x:1", "urn:x:2"))),
    # paths
    ("a", t("a")),
    ("a.b", t("a", sub=("b",))),
    ("a.b==1", t("a", "==", 1, ("b",))),
    ("a.b.c==1", t("a", "==", 1, ("b", "c"))),
    ('a.unitCode=="GQ"', t("a", "==", "GQ", ("unitCode",))),
    ("a[b]==1", t("a", "==", 1, keys=("b",))),
    ('a[b][c]=="x"', t("a", "==", "x", keys=("b", "c"))),
    ("a.b[c]==1", t("a", "==", 1, ("b",), ("c",))),
    ("label[zh]", t("label", keys=("zh",))),
    ("pm2_5-x==1", t("pm2_5-x", "==", 1)),
    # full IRIs as names: dots belong to the IRI
    ("https://example.org/ns#height>500", t("https://example.org/ns#height", ">", 500)),
    ("http://a.b.example/v1.2/name", t("http://a.b.example/v1.2/name")),
    ("urn:x:attr==1", t("urn:x:attr", "==", 1)),
    ("a.https://example.org/sub==1", t("a", "==", 1, ("https://example.org/sub",))),
    # ; binds tighter than |, brackets group
    ("a;b", All((t("a"), t("b")))),
    ("a|b", Any_((t("a"), t("b")))),
    ("a==1;b==2;c==3", All((t("a", "==", 1), t("b", "==", 2), t("c", "==", 3)))),
    ("a==1;b==2|c==3", Any_((All((t("a", "==", 1), t("b", "==", 2))), t("c", "==", 3)))),
    ("a==1|b==2;c==3", Any_((t("a", "==", 1), All((t("b", "==", 2), t("c", "==", 3)))))),
    ("(a==1|b==2);c==3", All((Any_((t("a", "==", 1), t("b", "==", 2))), t("c", "==", 3)))),
    ("a==1;(b==2|c==3)", All((t("a", "==", 1), Any_((t("b", "==", 2), t("c", "==", 3)))))),
    ("((a))", t("a")),
    ("(a|b)|(c;d)", Any_((Any_((t("a"), t("b"))), All((t("c"), t("d")))))),
    ("a~=x;b==1", All((t("a", "~=", "x"), t("b", "==", 1)))),
    ("(a~=x)", t("a", "~=", "x")),
]


@pytest.mark.parametrize(("text", "expected"), Q_CASES, ids=[c[0] for c in Q_CASES])
def test_parse_q(text: str, expected: Node) -> None:
    assert typed(parse_q(text)) == typed(expected)


Q_ERRORS = [
    ("a == 1", 1, "expected an operator"),
    ("a=1", 1, "expected an operator"),
    ("a==", 3, "expected a value"),
    ("a==1;", 5, "expected an attribute name"),
    ("|a", 0, "expected an attribute name"),
    ("(a==1", 5, "missing )"),
    ("a==1)", 4, "unexpected text"),
    ("a==1..", 6, "expected a value"),
    ("a>1..2", 5, "a range needs == or !="),
    ("a<=1,2", 4, "a list of values needs == or !="),
    ('a=="abc', 7, "unterminated string"),
    ("a[b==1", 3, "missing ]"),
    ("a.==1", 2, "expected an attribute name"),
    ("a[]", 2, "expected an attribute name"),
    ("()", 1, "expected an attribute name"),
    ("(" * 40 + "a" + ")" * 40, 33, "brackets nest too deeply"),
]


@pytest.mark.parametrize(("text", "pos", "why"), Q_ERRORS, ids=[e[0][:40] for e in Q_ERRORS])
def test_parse_q_errors_point_at_the_bad_part(text: str, pos: int, why: str) -> None:
    detail = bad(parse_q, text)
    assert f"position {pos} ({why}" in detail
    assert text[:pos] + " >>" + text[pos:] in detail


def test_parse_q_empty() -> None:
    assert bad(parse_q, "") == "q is empty"


def test_parse_q_nesting_up_to_the_limit_is_fine() -> None:
    assert parse_q("(" * 32 + "a" + ")" * 32) == t("a")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [('a~="x|y"', "x|y"), ('a!~="x;y"', "x;y"), ('a~="(?i)tower"', "(?i)tower")],
)
def test_quoted_pattern_keeps_its_special_characters(text: str, pattern: str) -> None:
    # a quoted pattern may hold ; | and brackets (an unquoted one ends at the first of them)
    node = parse_q(text)
    assert isinstance(node, Term) and node.value == pattern


@pytest.mark.parametrize("text", ["a~=(", 'a~="(x"', "a!~=[z-a]", "a~=*x"])
def test_invalid_regex(text: str) -> None:
    detail = refused(parse_q, text)
    assert detail.startswith("invalid q at position ")
    assert "(invalid regular expression: " in detail


def test_big_integer_literals_are_exact() -> None:
    # through float() 9007199254740993 would become 9007199254740992
    assert typed(parse_q("a==9007199254740993")) == typed(t("a", "==", 9007199254740993))
    assert typed(parse_q("a==-99999999999999999999")) == typed(t("a", "==", -(10**20) + 1))


@pytest.mark.parametrize("text", ["a~=x{99999999999}", "a!~=" + "(" * 1500])
def test_unusable_regex_is_bad_request_data(text: str) -> None:
    # re.compile raises OverflowError and RecursionError here, not re.error
    assert "regular expression" in refused(parse_q, text)


# -- type expressions ------------------------------------------------------------------------------


def ty(name: str) -> Term:
    return Term(Path(name), "type", name)


VEHICLE = "https://ngsi-ld-test-suite/context#Vehicle"
PARKING = "https://ngsi-ld-test-suite/context#OffStreetParking"

TYPE_CASES = [
    ("Building", ty("Building")),
    (" Building ", ty("Building")),
    ("Building,Parking", Any_((ty("Building"), ty("Parking")))),
    ("Building|Parking", Any_((ty("Building"), ty("Parking")))),
    ("Building , Parking", Any_((ty("Building"), ty("Parking")))),
    ("Building;TouristDestination", All((ty("Building"), ty("TouristDestination")))),
    ("(Building;TouristDestination)", All((ty("Building"), ty("TouristDestination")))),
    ("A;B|C", Any_((All((ty("A"), ty("B"))), ty("C")))),
    ("A|B;C", Any_((ty("A"), All((ty("B"), ty("C")))))),
    ("A,B;C", Any_((ty("A"), All((ty("B"), ty("C")))))),
    (
        "(Building;Parking),TouristDestination",
        Any_((All((ty("Building"), ty("Parking"))), ty("TouristDestination"))),
    ),
    ("(A|B);C", All((Any_((ty("A"), ty("B"))), ty("C")))),
    ("(A,B);(C,D)", All((Any_((ty("A"), ty("B"))), Any_((ty("C"), ty("D")))))),
    (f"{VEHICLE},{PARKING}", Any_((ty(VEHICLE), ty(PARKING)))),
    ("urn:ngsi-ld:T:1", ty("urn:ngsi-ld:T:1")),
]


@pytest.mark.parametrize(("text", "expected"), TYPE_CASES, ids=[c[0] for c in TYPE_CASES])
def test_parse_types(text: str, expected: Node) -> None:
    assert parse_types(text) == expected


TYPE_ERRORS = [
    ("", "type is empty"),
    ("   ", "type is empty"),
    ("(A", "missing )"),
    ("A)", "unexpected text"),
    ("A(B)", "unexpected text"),
    ("A,,B", "expected a type name"),
    ("A;", "expected a type name"),
    ("()", "expected a type name"),
    ("|A", "expected a type name"),
    ("(" * 40 + "A" + ")" * 40, "brackets nest too deeply"),
]


@pytest.mark.parametrize(("text", "why"), TYPE_ERRORS, ids=[e[0][:30] for e in TYPE_ERRORS])
def test_parse_types_errors(text: str, why: str) -> None:
    assert why in bad(parse_types, text)


# -- scopeQ ----------------------------------------------------------------------------------------


def sc(pattern: str) -> Term:
    return Term(Path("scope"), "scope", pattern)


SCOPE_CASES = [
    ("/Madrid/Gardens/ParqueNorte", sc("/Madrid/Gardens/ParqueNorte")),
    ("/Madrid/+/ParqueNorte", sc("/Madrid/+/ParqueNorte")),
    ("/CompanyA/#", sc("/CompanyA/#")),
    ("/#", sc("/#")),
    ("/", sc("/")),
    ("/a;/b", All((sc("/a"), sc("/b")))),
    ("/a,/b", Any_((sc("/a"), sc("/b")))),
    ("/a|/b", Any_((sc("/a"), sc("/b")))),
    ("/a;/b|/c", Any_((All((sc("/a"), sc("/b"))), sc("/c")))),
    ("(/a|/b);/c", All((Any_((sc("/a"), sc("/b"))), sc("/c")))),
    ("/上海/浦东", sc("/上海/浦东")),
]


@pytest.mark.parametrize(("text", "expected"), SCOPE_CASES, ids=[c[0] for c in SCOPE_CASES])
def test_parse_scope_q(text: str, expected: Node) -> None:
    assert parse_scope_q(text) == expected


SCOPE_ERRORS = [
    ("", "scopeQ is empty"),
    ("Madrid", "invalid scope pattern 'Madrid'"),
    ("/a//b", "invalid scope pattern '/a//b'"),
    ("/a/", "invalid scope pattern '/a/'"),
    ("/a b", "invalid scope pattern '/a b'"),
    ("/a#", "invalid scope pattern '/a#'"),
    ("/a+", "invalid scope pattern '/a+'"),
    ("/a;", "invalid scope pattern ''"),
    ("(/a", "missing )"),
    ("/a)", "unexpected text"),
]


@pytest.mark.parametrize(("text", "why"), SCOPE_ERRORS, ids=[e[0] or "empty" for e in SCOPE_ERRORS])
def test_parse_scope_q_errors(text: str, why: str) -> None:
    assert why in bad(parse_scope_q, text)


SCOPE_MATCHES = [
    ("/a", "/a", True),
    ("/a", "/a/b", False),
    ("/a", "/ab", False),
    ("/#", "/a", True),
    ("/#", "/a/b/c", True),
    ("/a/#", "/a", True),
    ("/a/#", "/a/b/c", True),
    ("/a/#", "/ab", False),
    ("/a/#", "/b/a", False),
    ("/a/+", "/a/b", True),
    ("/a/+", "/a", False),
    ("/a/+", "/a/b/c", False),
    ("/a/+/c", "/a/x/c", True),
    ("/a/+/c", "/a/x/y/c", False),
    ("/+", "/x", True),
    ("/+", "/x/y", False),
    ("/a.b", "/a.b", True),
    ("/a.b", "/axb", False),
    ("/a*", "/aaa", False),
]


@pytest.mark.parametrize(("pattern", "scope", "matches"), SCOPE_MATCHES)
def test_scope_regex(pattern: str, scope: str, matches: bool) -> None:
    assert (re.search(scope_regex(pattern), scope) is not None) is matches


# -- orderBy ---------------------------------------------------------------------------------------

ORDER_CASES = [
    ("name", (OrderKey(Path("name")),)),
    ("name;asc", (OrderKey(Path("name")),)),
    ("name;desc", (OrderKey(Path("name"), True),)),
    ("id,createdAt;desc", (OrderKey(Path("id")), OrderKey(Path("createdAt"), True))),
    ("name.createdAt", (OrderKey(Path("name", ("createdAt",))),)),
    ("name.subProperty;desc", (OrderKey(Path("name", ("subProperty",)), True),)),
    ("address[district];desc", (OrderKey(Path("address", (), ("district",)), True),)),
    (
        "type;asc,name.subProperty;desc,name;asc",
        (
            OrderKey(Path("type")),
            OrderKey(Path("name", ("subProperty",)), True),
            OrderKey(Path("name")),
        ),
    ),
    (" name;desc", (OrderKey(Path("name"), True),)),
    ("https://example.org/ns#name", (OrderKey(Path("https://example.org/ns#name")),)),
]


@pytest.mark.parametrize(("text", "expected"), ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_parse_order_by(text: str, expected: tuple[OrderKey, ...]) -> None:
    assert parse_order_by(text) == expected


@pytest.mark.parametrize(
    ("text", "member"),
    [("id", True), ("type", True), ("createdAt", True), ("modifiedAt", True), ("name", False),
     ("id.x", False), ("id[x]", False), ("observedAt", False)],
)  # fmt: skip
def test_order_key_entity_member(text: str, member: bool) -> None:
    (key,) = parse_order_by(text)
    assert key.entity_member is member


ORDER_ERRORS = [
    ("name;up", "orderBy direction must be asc or desc, not 'up'"),
    ("name;DESC", "not 'DESC'"),
    ("name;desc;asc", "not 'desc;asc'"),
    ("a b", "unexpected text in orderBy"),
    ("a==1", "unexpected text in orderBy"),
    ("a[b", "missing ]"),
    ("a.", "expected an attribute name"),
]


@pytest.mark.parametrize(("text", "why"), ORDER_ERRORS, ids=[e[0] for e in ORDER_ERRORS])
def test_parse_order_by_errors(text: str, why: str) -> None:
    assert why in bad(parse_order_by, text)


@pytest.mark.parametrize("text", ["", "a,,b", "a,", " "])
def test_parse_order_by_empty_items_are_bad_request(text: str) -> None:
    bad(parse_order_by, text)


@pytest.mark.parametrize(
    ("call", "text", "name"),
    [(parse_order_by, "a,,b", "orderBy"), (parse_types, "A,,B", "type"),
     (parse_scope_q, "Madrid", "scopeQ")],
)  # fmt: skip
def test_errors_name_their_own_parameter(call: Any, text: str, name: str) -> None:
    detail = bad(call, text)
    assert "invalid q " not in detail and "q is empty" not in detail
    assert detail.startswith(f"{name} ") or detail.startswith(f"invalid {name} ")
    assert "|" not in detail  # type shows the client's commas, not the parser's rewrite


# -- pick / omit -----------------------------------------------------------------------------------


def tree(projection: Projection) -> dict[str, Any]:
    return {
        n: tree(projection.linked[n]) if n in projection.linked else None for n in projection.names
    }


PROJECTION_CASES = [
    ("id", {"id": None}),
    ("id,name", {"id": None, "name": None}),
    ("name,name", {"name": None}),
    ("locatedAt{name}", {"locatedAt": {"name": None}}),
    ("id,locatedAt{id,name}", {"id": None, "locatedAt": {"id": None, "name": None}}),
    (
        "id,locatedAt{id,name,isInCountry{id,description}}",
        {"id": None, "locatedAt": {"id": None, "name": None,
                                   "isInCountry": {"id": None, "description": None}}},
    ),
    ("a{b},c{d}", {"a": {"b": None}, "c": {"d": None}}),
    ("a{b{c{d}}}", {"a": {"b": {"c": {"d": None}}}}),
    ("https://example.org/ns#name,urn:x", {"https://example.org/ns#name": None, "urn:x": None}),
    ("名称", {"名称": None}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"), PROJECTION_CASES, ids=[c[0] for c in PROJECTION_CASES]
)
def test_parse_projection(text: str, expected: dict[str, Any]) -> None:
    projection = parse_projection(text)
    assert tree(projection) == expected
    assert all(n in projection for n in expected)


PROJECTION_ERRORS = [
    ("", 0, "empty"),
    ("id;name", 2, "unexpected character"),
    ("id,locatedAt{name", 17, "unclosed '{'"),
    ("id,locatedAt{{name}", 13, "expected a member name"),
    ("id,,name", 3, "expected a member name"),
    ("id,locatedAt{,name}", 13, "expected a member name"),
    ("id,locatedAt{}", 13, "expected a member name"),
    ("id}", 2, "unexpected '}'"),
    ("id,", 3, "expected a member name"),
    (",id", 0, "expected a member name"),
    ("a b", 1, "unexpected character"),
    ('a,"b"', 2, "expected a member name"),
    ("a{b}}", 4, "unexpected '}'"),
]


@pytest.mark.parametrize(
    ("text", "pos", "why"), PROJECTION_ERRORS, ids=[e[0] or "empty" for e in PROJECTION_ERRORS]
)
@pytest.mark.parametrize("what", ["pick", "omit"])
def test_parse_projection_errors(text: str, pos: int, why: str, what: str) -> None:
    detail = bad(parse_projection, text, what)
    assert detail == f"invalid {what} at position {pos} ({why}): {text}"


def test_deeply_nested_projection_is_bad_request_data() -> None:
    assert "nest" in refused(parse_projection, "a{" * 1200 + "b" + "}" * 1200)
    assert tree(parse_projection("a{" * 8 + "b" + "}" * 8))  # reasonable nesting still works


# -- geo-queries -----------------------------------------------------------------------------------

SQUARE = [[[121.49, 31.22], [121.52, 31.22], [121.52, 31.25], [121.49, 31.25], [121.49, 31.22]]]
PEOPLES_SQUARE = [121.4737, 31.2304]

GEO_CASES = [
    (
        ("near;maxDistance==3300", "Point", "[121.4737, 31.2304]", None),
        GeoQuery("near", {"type": "Point", "coordinates": PEOPLES_SQUARE}, max_distance=3300.0),
    ),
    (
        ("near;minDistance==5400", "Point", PEOPLES_SQUARE, "observationSpace"),
        GeoQuery("near", {"type": "Point", "coordinates": PEOPLES_SQUARE}, "observationSpace",
                 min_distance=5400.0),
    ),
    (
        ("near;minDistance==10;maxDistance==20.5", "Point", "[0,0]", None),
        GeoQuery("near", {"type": "Point", "coordinates": [0, 0]}, max_distance=20.5,
                 min_distance=10.0),
    ),
    (
        ("within", "Polygon", str(SQUARE), None),
        GeoQuery("within", {"type": "Polygon", "coordinates": SQUARE}),
    ),
    (
        ("contains", "Point", "[121.5,31.24]", None),
        GeoQuery("contains", {"type": "Point", "coordinates": [121.5, 31.24]}),
    ),
    (
        ("intersects", "LineString", "[[0,0],[1,1]]", None),
        GeoQuery("intersects", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
    ),
    (
        ("equals", "MultiPoint", "[[0,0],[1,1]]", None),
        GeoQuery("equals", {"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]}),
    ),
    (
        ("disjoint", "MultiPolygon", str([SQUARE]), None),
        GeoQuery("disjoint", {"type": "MultiPolygon", "coordinates": [SQUARE]}),
    ),
    (
        ("overlaps", "MultiLineString", "[[[0,0],[1,1]]]", None),
        GeoQuery("overlaps", {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]]]}),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("args", "expected"), GEO_CASES, ids=[c[0][0] for c in GEO_CASES])
def test_parse_geo_query(args: tuple, expected: GeoQuery) -> None:
    assert parse_geo_query(*args) == expected


def test_no_geo_query() -> None:
    assert parse_geo_query(None, None, None, None) is None


GEO_ERRORS = [
    (("invalid", "Point", "[1,2]", None), "not 'invalid'"),
    (("Within", "Point", "[1,2]", None), "not 'Within'"),
    (("near", "Point", "[1,2]", None), "near needs maxDistance or minDistance"),
    (("near;maxDistance==abc", "Point", "[1,2]", None), "maxDistance must be a number, not 'abc'"),
    (("near;minDistance==-1", "Point", "[1,2]", None), "minDistance must be a non-negative"),
    (("near;maxDistance==inf", "Point", "[1,2]", None), "maxDistance must be a non-negative"),
    (("near;maxDistance==nan", "Point", "[1,2]", None), "maxDistance must be a non-negative"),
    (("near;maxDistance=5", "Point", "[1,2]", None), "invalid georel modifier 'maxDistance=5'"),
    (("near;radius==5", "Point", "[1,2]", None), "invalid georel modifier 'radius==5'"),
    (("within;maxDistance==5", "Point", "[1,2]", None), "invalid georel modifier"),
    (("within", "Circle", "[1,2]", None), "not 'Circle'"),
    (("within", "point", "[1,2]", None), "not 'point'"),
    (("within", "Point", "[1]", None), "coordinates do not make a valid Point"),
    (("within", "Point", "[[1,2]]", None), "coordinates do not make a valid Point"),
    (("within", "Point", '[1,"a"]', None), "coordinates do not make a valid Point"),
    (("within", "Polygon", "[1,2]", None), "coordinates do not make a valid Polygon"),
    (("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]", None), "valid Polygon"),
    (("within", "Point", "1,2", None), "coordinates are not a JSON array: '1,2'"),
    (("within", "Point", "nope", None), "coordinates are not a JSON array"),
    (("within", "Point", None, None), "needs georel, geometry and coordinates together"),
    ((None, "Point", "[1,2]", None), "needs georel, geometry and coordinates together"),
    (("within", None, "[1,2]", None), "needs georel, geometry and coordinates together"),
    ((None, None, None, "location"), "geoproperty needs georel, geometry and coordinates"),
]


@pytest.mark.parametrize(("args", "why"), GEO_ERRORS, ids=[str(e[0]) for e in GEO_ERRORS])
def test_parse_geo_query_errors(args: tuple, why: str) -> None:
    assert why in bad(parse_geo_query, *args)


def test_geo_bbox() -> None:
    within = parse_geo_query("within", "Polygon", str(SQUARE), None)
    assert within is not None and within.bbox() == (121.49, 121.52, 31.22, 31.25)
    for georel in ("disjoint", "near;minDistance==10"):
        query = parse_geo_query(georel, "Point", "[1,2]", None)
        assert query is not None and query.bbox() is None


def destination(lon: float, lat: float, bearing: float, metres: float) -> tuple[float, float]:
    """The point `metres` away on the sphere along `bearing` (degrees)."""
    radius = 6_371_008.8
    d, b = metres / radius, math.radians(bearing)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(l2), math.degrees(p2)


@FUZZ
@given(
    lon=st.floats(-160, 160),
    lat=st.floats(-75, 75),
    bearing=st.floats(0, 360),
    metres=st.floats(1, 200_000),
)
def test_near_bbox_holds_every_point_within_max_distance(
    lon: float, lat: float, bearing: float, metres: float
) -> None:
    query = parse_geo_query(f"near;maxDistance=={metres}", "Point", [lon, lat], None)
    assert query is not None
    x, y = destination(lon, lat, bearing, metres * 0.999)
    assume(haversine(lon, lat, x, y) <= metres)
    minx, maxx, miny, maxy = query.bbox()  # type: ignore[misc]
    assert minx <= x <= maxx and miny <= y <= maxy


# -- properties ------------------------------------------------------------------------------------

TRICKY = list('=!<>~;|()[].,"\\:/#+{}* -0123456789eE\tab\x00é金') + ["..", "==", "//", "://"]

Q_SEEDS = [
    'name=="Jin Mao Tower"',
    "pm25>=50;pm25<100",
    "(pm25>100|active==true);name~=Station",
    "refBuilding==urn:ngsi-ld:Building:JinMao,urn:ngsi-ld:Building:ShanghaiTower",
    "pm25.observedAt>=2024-05-02T00:00:00Z",
    'address[street][name]=="Zhongshan Road"',
    "pm25==50..80|temperature!=-1.5e3",
    "https://example.org/ns#height>500",
    'label[zh]=="上海中心大厦";tags!=true,false',
]
TYPE_SEEDS = ["Building", "(Building;Parking),TouristDestination", f"{VEHICLE},{PARKING}", "A|B;C"]
SCOPE_SEEDS = ["/Shanghai/Huangpu/#", "/Madrid/+/ParqueNorte;/CompanyA/#", "(/a|/b),/#"]
ORDER_SEEDS = ["name;desc", "type;asc,name.subProperty;desc,name;asc", "address[district],id"]
PICK_SEEDS = ["id,name", "id,locatedAt{id,name,isInCountry{id,description}}", "a{b},c{d}"]


def noise(seeds: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.lists(st.sampled_from(TRICKY), max_size=30).map("".join),
        mutated(seeds, TRICKY, 1),
    )


def returns_or_bad_request(call: Any, text: str) -> None:
    try:
        call(text)
    except BadRequestData as exc:
        assert exc.detail  # every refusal says why


@FUZZ
@given(noise(Q_SEEDS))
def test_q_never_crashes(text: str) -> None:
    returns_or_bad_request(parse_q, text)


@FUZZ
@given(noise(TYPE_SEEDS))
def test_types_never_crash(text: str) -> None:
    returns_or_bad_request(parse_types, text)


@FUZZ
@given(noise(SCOPE_SEEDS))
def test_scope_q_never_crashes(text: str) -> None:
    try:
        node = parse_scope_q(text)
    except BadRequestData:
        return
    for term in _terms(node):  # every accepted pattern compiles to a usable regex
        re.compile(scope_regex(term.value))


@FUZZ
@given(noise(ORDER_SEEDS))
def test_order_by_never_crashes(text: str) -> None:
    returns_or_bad_request(parse_order_by, text)


@FUZZ
@given(noise(PICK_SEEDS), st.sampled_from(["pick", "omit"]))
def test_projection_never_crashes(text: str, what: str) -> None:
    returns_or_bad_request(lambda s: parse_projection(s, what), text)


def _terms(node: Node) -> list[Term]:
    if isinstance(node, Term):
        return [node]
    return [t for p in node.parts for t in _terms(p)]


# A q AST generator and printer: parse_q(print(ast)) must give the AST back.

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
NAMES = st.builds(
    str.__add__, st.sampled_from(_LETTERS), st.text(_LETTERS + "0123456789-", max_size=6)
)
IRIS = NAMES.map(lambda n: f"https://example.org/ns#{n}")
INTS = st.integers()  # also beyond 2**53: integer literals must stay exact
FLOATS = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f == f)
DATETIMES = st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))
URNS = NAMES.map(lambda n: f"urn:ngsi-ld:Thing:{n}")
SCALARS = st.one_of(INTS, FLOATS, st.booleans(), st.text(max_size=8), DATETIMES, URNS)
PATTERNS = st.sampled_from(["^ab", "x.*y", "[0-9]+$", "Station$", "a{2}", "é+"])


@st.composite
def q_paths(draw: st.DrawFn) -> Path:
    if draw(st.booleans()) and draw(st.booleans()):
        return Path(draw(IRIS))  # a full IRI swallows the dots that follow it
    subs = draw(st.lists(st.one_of(NAMES, st.sampled_from(["observedAt", "unitCode"])), max_size=2))
    return Path(draw(NAMES), tuple(subs), tuple(draw(st.lists(NAMES, max_size=2))))


@st.composite
def q_terms(draw: st.DrawFn) -> Term:
    path = draw(q_paths())
    kind = draw(st.sampled_from(["exists", "compare", "pattern", "range", "list"]))
    if kind == "exists":
        return Term(path)
    if kind == "pattern":
        return Term(path, draw(st.sampled_from(["~=", "!~="])), draw(PATTERNS))
    if kind == "compare":
        return Term(path, draw(st.sampled_from(["==", "!=", ">", ">=", "<", "<="])), draw(SCALARS))
    op = draw(st.sampled_from(["==", "!="]))
    if kind == "range":
        bound = st.one_of(INTS, FLOATS, DATETIMES, st.text(max_size=5))
        return Term(path, op, Range(draw(bound), draw(bound)))
    return Term(path, op, tuple(draw(st.lists(SCALARS, min_size=2, max_size=4))))


def q_trees(max_leaves: int = 10) -> st.SearchStrategy[Node]:
    def group(kind: type, parts: list[Node]) -> Node:
        flat: list[Node] = []  # the parser reads a;b;c (and a|b|c) as one group
        for part in parts:
            flat.extend(part.parts if isinstance(part, kind) else [part])  # type: ignore[attr-defined]
        return kind(tuple(flat))

    def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        kinds = st.sampled_from([All, Any_])
        return st.builds(group, kinds, st.lists(children, min_size=2, max_size=3))

    return st.recursive(q_terms(), extend, max_leaves=max_leaves)


def show_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Range):
        return f"{show_value(value.low)}..{show_value(value.high)}"
    if isinstance(value, tuple):
        return ",".join(show_value(v) for v in value)
    if re.fullmatch(r"urn:[\w:\-]+|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value):
        return value  # URIs and DateTimes go unquoted
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def show(node: Node) -> str:
    if isinstance(node, Term):
        path = node.path
        text = path.attr + "".join("." + s for s in path.sub) + "".join(f"[{k}]" for k in path.keys)
        return text if node.op is None else text + node.op + show_value(node.value)
    if isinstance(node, All):
        return ";".join(f"({show(p)})" if isinstance(p, Any_) else show(p) for p in node.parts)
    return "|".join(show(p) for p in node.parts)


@FUZZ
@given(q_trees())
def test_printed_q_parses_back(node: Node) -> None:
    assert typed(parse_q(show(node))) == typed(node)


@FUZZ
@given(st.lists(NAMES | IRIS, min_size=1, max_size=5), st.sampled_from([",", "|", ";"]))
def test_type_lists(names: list[str], sep: str) -> None:
    node = parse_types(sep.join(names))
    terms = tuple(ty(n) for n in names)
    if len(terms) == 1:
        assert node == terms[0]
    else:
        assert node == (All(terms) if sep == ";" else Any_(terms))
