"""Pure writers for the client formats: M3U lines, HDHomeRun documents and device ids; text in, text out."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape as xml_escape

# Line breaks and tabs (with the spaces around them) become one space: none may split an M3U line.
_BREAKS = re.compile("[ ]*[\t\n\v\f\r\x85\u2028\u2029]+[ ]*")
# Other C0 and C1 control characters carry no text and are dropped.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]+")
# Any of the above: one search decides whether a value needs cleaning at all (it rarely does).
_DIRTY = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Characters XML 1.0 forbids outright; libxml2 refuses a document that contains one.
INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_QUOTE, _APOSTROPHE = '"', "'"

# libhdhomerun's nibble table for device id checksums (hdhomerun_discover_validate_device_id).
_HDHR_LOOKUP = (0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0)


def one_line(value: str) -> str:
    """Text that stays on one line: line breaks become a space, other controls go, the ends are trimmed."""
    if _DIRTY.search(value) is None:
        return value.strip()
    return _CONTROL.sub("", _BREAKS.sub(" ", value)).strip()


def m3u_attr(value: str) -> str:
    """A value safe inside an M3U attribute's double quotes.

    M3U has no escape syntax: a double quote would end the value for every client, so it becomes
    an apostrophe. Commas and other punctuation are safe inside the quotes.
    """
    return one_line(value).replace(_QUOTE, _APOSTROPHE)


def output_guide_id(guide_id: str) -> str:
    """The guide id as written to clients, identical in the M3U tvg-id and the XMLTV channel id.

    Both outputs apply this same rule, so a hostile id cannot make the two differ.
    """
    return INVALID_XML.sub("", m3u_attr(guide_id))


def xml_text(value: str) -> str:
    """Element text with XML's special characters escaped and forbidden characters removed."""
    if INVALID_XML.search(value):
        value = INVALID_XML.sub("", value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_attr(value: str) -> str:
    """An attribute value for double quotes; whitespace controls are kept as character references."""
    return (
        xml_text(value)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


@dataclass(slots=True)
class PlaylistItem:
    """One playable channel as clients see it."""

    guide_id: str
    number: int
    name: str
    url: str
    logo: str | None = None
    group: str | None = None
    #: VLC options (http-user-agent, http-referrer) for direct provider URLs.
    options: list[tuple[str, str]] = field(default_factory=list)


def display_name(name: str, number: int) -> str:
    """A channel's name for clients; a blank name falls back to its number."""
    return one_line(name) or f"Channel {number}"


def m3u_header(xmltv_url: str) -> str:
    quoted = m3u_attr(xmltv_url)
    return f'#EXTM3U x-tvg-url="{quoted}" url-tvg="{quoted}"\n'


def m3u_entry(item: PlaylistItem) -> str:
    """The #EXTINF line, any #EXTVLCOPT lines and the URL of one channel, newline-terminated."""
    name = display_name(item.name, item.number)
    parts = [
        f'#EXTINF:-1 tvg-id="{output_guide_id(item.guide_id)}"',
        f' tvg-chno="{item.number}"',
        # The name is already on one line; only its quotes need replacing inside the attribute.
        f' tvg-name="{name.replace(_QUOTE, _APOSTROPHE)}"',
    ]
    if item.logo:
        parts.append(f' tvg-logo="{m3u_attr(item.logo)}"')
    if item.group:
        parts.append(f' group-title="{m3u_attr(item.group)}"')
    parts.append(f",{name}\n")
    for option, value in item.options:
        parts.append(f"#EXTVLCOPT:{option}={one_line(value)}\n")
    parts.append(f"{one_line(item.url)}\n")
    return "".join(parts)


# --- HDHomeRun emulation ----------------------------------------------------------------------------


def hdhr_checksum(device_id: int) -> int:
    """libhdhomerun's device id check: the XOR of looked-up and raw nibbles; a valid id gives 0."""
    checksum = 0
    for shift in (28, 20, 12, 4):
        checksum ^= _HDHR_LOOKUP[(device_id >> shift) & 0xF]
        checksum ^= (device_id >> (shift - 4)) & 0xF
    return checksum


def hdhr_device_id(seed_hex: str) -> str:
    """Eight hex digits derived from a secret hash, starting with 1 like real tuners, with a valid checksum.

    The last nibble is XORed in raw, so setting it to the checksum of the other seven makes the
    total zero, which is what clients such as Plex check.
    """
    base = (0x1 << 28) | (int(seed_hex[:8], 16) & 0x0FFFFFF0)
    return f"{base | hdhr_checksum(base):08X}"


@dataclass(frozen=True, slots=True)
class HdhrDevice:
    device_id: str
    device_auth: str
    friendly_name: str
    base_url: str
    tuner_count: int
    #: 32 hex digits for the UPnP UDN.
    udn_hex: str


def hdhr_discover(device: HdhrDevice) -> dict[str, Any]:
    return {
        "FriendlyName": device.friendly_name,
        "Manufacturer": "Silicondust",
        "ManufacturerURL": "https://www.silicondust.com/",
        "ModelNumber": "HDTC-2US",
        "FirmwareName": "hdhomeruntc_atsc",
        "FirmwareVersion": "20200101",
        "DeviceID": device.device_id,
        "DeviceAuth": device.device_auth,
        "BaseURL": device.base_url,
        "LineupURL": f"{device.base_url}/lineup.json",
        "TunerCount": device.tuner_count,
    }


def hdhr_lineup_status() -> dict[str, Any]:
    """A tuner that has finished scanning: Plex and Jellyfin wait for ScanInProgress 0."""
    return {"ScanInProgress": 0, "ScanPossible": 1, "Source": "Cable", "SourceList": ["Cable"]}


def hdhr_lineup_entry(item: PlaylistItem) -> str:
    """One channel of lineup.json: GuideNumber is the channel number."""
    return json.dumps(
        {
            "GuideNumber": str(item.number),
            "GuideName": display_name(item.name, item.number),
            "URL": one_line(item.url),
        },
        ensure_ascii=False,
    )


def hdhr_device_xml(device: HdhrDevice) -> str:
    """The UPnP device description some clients fetch before discover.json."""
    udn = uuid.UUID(hex=device.udn_hex[:32])
    name = xml_text(device.friendly_name)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<root xmlns="urn:schemas-upnp-org:device-1-0">\n'
        "  <specVersion><major>1</major><minor>0</minor></specVersion>\n"
        f"  <URLBase>{xml_escape(device.base_url)}</URLBase>\n"
        "  <device>\n"
        "    <deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType>\n"
        f"    <friendlyName>{name}</friendlyName>\n"
        "    <manufacturer>Silicondust</manufacturer>\n"
        "    <modelName>HDTC-2US</modelName>\n"
        "    <modelNumber>HDTC-2US</modelNumber>\n"
        f"    <serialNumber>{device.device_id}</serialNumber>\n"
        f"    <UDN>uuid:{udn}</UDN>\n"
        "  </device>\n"
        "</root>\n"
    )
