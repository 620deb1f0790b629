"""Hostile BRP XML is refused quickly, without reading local files or exhausting memory."""

from __future__ import annotations

import pytest
from lxml import etree

from services.brp_sync import parsing
from services.brp_sync.parsing import RefusedDocumentError, parse_document
from services.brp_sync.xml_codec import NAMESPACE

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Mutatie xmlns="urn:registry-sandbox:brp:mutatie:v2"><BerichtId>&lol9;</BerichtId></Mutatie>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Mutatie [<!ENTITY passwd SYSTEM "file:///etc/passwd">]>
<Mutatie xmlns="urn:registry-sandbox:brp:mutatie:v2"><BerichtId>&passwd;</BerichtId></Mutatie>"""


def refusal(data: bytes, **limits: int) -> RefusedDocumentError:
    with pytest.raises(RefusedDocumentError) as refused:
        parse_document(data, **limits)
    return refused.value


@pytest.mark.timeout(5)
def test_billion_laughs_is_refused_before_any_entity_is_declared() -> None:
    error = refusal(BILLION_LAUGHS)
    assert error.code == "SBX-BRP-DTD-NOT-ALLOWED"


@pytest.mark.timeout(5)
def test_external_entity_to_etc_passwd_is_refused_and_nothing_of_the_file_is_echoed() -> None:
    error = refusal(EXTERNAL_ENTITY)
    assert error.code == "SBX-BRP-DTD-NOT-ALLOWED"
    assert "root:" not in str(error)


def test_the_parser_itself_never_expands_an_external_entity() -> None:
    # Second line of defence, should the DOCTYPE check ever be bypassed: the lxml parser's own settings.
    root = etree.fromstring(EXTERNAL_ENTITY, parsing._parser())
    text = etree.tostring(root).decode()
    assert "root:" not in text and "/bin/" not in text


@pytest.mark.timeout(10)
def test_a_100_mb_document_is_refused_on_size_before_parsing() -> None:
    filler = b"<Voornamen>" + b"x" * (100 * 1024 * 1024) + b"</Voornamen>"
    document = b'<Mutatie xmlns="' + NAMESPACE.encode() + b'">' + filler + b"</Mutatie>"
    error = refusal(document)
    assert error.code == "SBX-BRP-DOCUMENT-TOO-LARGE"
    assert str(len(document)) in error.reason


@pytest.mark.timeout(5)
def test_ten_thousand_deep_nesting_is_refused() -> None:
    document = b"<a>" * 10_000 + b"</a>" * 10_000
    assert refusal(document).code == "SBX-BRP-DOCUMENT-TOO-DEEP"


def test_nesting_deeper_than_our_own_limit_is_refused_too() -> None:
    document = b"<a>" * 40 + b"</a>" * 40
    assert refusal(document).code == "SBX-BRP-DOCUMENT-TOO-DEEP"
    assert parse_document(b"<a>" * 10 + b"</a>" * 10).tag == "a"


def test_the_depth_limit_counts_the_root_as_level_one_and_any_namespace_or_text_alike() -> None:
    assert parse_document(b"<a>" * parsing.MAX_DEPTH + b"</a>" * parsing.MAX_DEPTH).tag == "a"
    assert refusal(b"<a>" * (parsing.MAX_DEPTH + 1) + b"</a>" * (parsing.MAX_DEPTH + 1)).code == (
        "SBX-BRP-DOCUMENT-TOO-DEEP"
    )
    mixed = b'<a xmlns="urn:x">t<b/>t<c><d xmlns="urn:y"><e/></d></c>t</a>'
    assert parse_document(mixed, max_depth=4).tag == "{urn:x}a"
    assert refusal(mixed, max_depth=3).code == "SBX-BRP-DOCUMENT-TOO-DEEP"


def test_utf16_cannot_smuggle_a_doctype_past_the_byte_check() -> None:
    assert refusal(EXTERNAL_ENTITY.decode().encode("utf-16")).code == "SBX-BRP-ENCODING-NOT-ALLOWED"


def test_broken_xml_is_refused_as_not_well_formed() -> None:
    assert refusal(b"<Mutatie><BerichtId></Mutatie>").code == "SBX-BRP-NOT-WELL-FORMED"
    assert refusal(b"<a>&undeclared;</a>").code == "SBX-BRP-NOT-WELL-FORMED"
    assert refusal(b"   ").code == "SBX-BRP-DOCUMENT-EMPTY"
