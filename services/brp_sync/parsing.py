"""The one hardened XML parse function for BRP documents: no entities, no DTD, no network, bounded size and depth."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

# gRPC refuses requests above 16 MiB before our code runs; documents are kept
# well below that. A day of 10,000 messages is about 7 MB.
MAX_DOCUMENT_BYTES = 12 * 1024 * 1024
# One answer lists a result per message: a document of 250,000 empty messages once cost 41 s and 1.5 GB
# before its answer proved too large to send. A working day's feed (10,000) fits in two documents.
MAX_MESSAGES_PER_DOCUMENT = 5_000
# A Mutatie is 5 levels deep inside a MutatieBericht; anything far deeper is an attack or a mistake.
MAX_DEPTH = 16

# Every way a document can carry entity or DTD machinery starts with one of these.
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY", b"<!ELEMENT", b"<!ATTLIST")


@dataclass
class RefusedDocumentError(Exception):
    """The whole document was refused before any message in it was read."""

    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


def _parser() -> etree.XMLParser:
    # lxml parsers are not thread-safe and ingestion runs in worker threads: one per call (they are cheap).
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_document(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH) -> etree._Element:
    """Parses one BRP XML document and returns its root element, or raises RefusedDocumentError.

    Order matters: the size is checked before a byte is parsed, DTD markers are
    refused before parsing (so no entity is ever declared, let alone expanded),
    and the depth is checked after libxml2's own limit (256 without huge_tree)
    has already stopped absurd nesting.
    """
    if len(data) > max_bytes:
        raise RefusedDocumentError(
            "SBX-BRP-DOCUMENT-TOO-LARGE", f"document is {len(data)} bytes; the limit is {max_bytes}"
        )
    if not data.strip():
        raise RefusedDocumentError("SBX-BRP-DOCUMENT-EMPTY", "the document is empty")
    head = data.lstrip()[:4]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        # UTF-16/32 would hide the markers below from a byte search.
        raise RefusedDocumentError("SBX-BRP-ENCODING-NOT-ALLOWED", "documents must be UTF-8")
    for marker in _DTD_MARKERS:
        if marker in data:
            raise RefusedDocumentError(
                "SBX-BRP-DTD-NOT-ALLOWED", f"{marker.decode()} is not allowed: no DTDs or entities"
            )
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as error:
        text = str(error)
        if "depth" in text.lower():
            raise RefusedDocumentError(
                "SBX-BRP-DOCUMENT-TOO-DEEP", f"nesting exceeds the depth limit: {text}"
            ) from None
        raise RefusedDocumentError("SBX-BRP-NOT-WELL-FORMED", f"not well-formed XML: {text}") from None
    tree = root.getroottree()
    if getattr(tree.docinfo, "doctype", "") or tree.docinfo.internalDTD is not None:
        raise RefusedDocumentError("SBX-BRP-DTD-NOT-ALLOWED", "a DOCTYPE is not allowed")
    # An element max_depth + 1 levels down (the root is level 1), found by libxml2's XPath in C: walking the
    # tree's start and end events in Python took as long as the parse itself (issue 11).
    if root.xpath("/*" * (max_depth + 1)):
        raise RefusedDocumentError("SBX-BRP-DOCUMENT-TOO-DEEP", f"nesting deeper than {max_depth} elements")
    return root
