"""Email as Baton takes it: an address is one bare mailbox, checked by the standard library's
parser (an SMTP integration's sender, an `email_send` step's recipients); a received message
is read with the standard library's default policy into what a task is told of it: sender,
subject, the text part, the names and sizes of its attachments (never their content), and
the Message-IDs that thread it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from html.parser import HTMLParser


def email_address(value: str) -> str:
    """`value` if it is one bare address (`someone@example.com`); ValueError otherwise. A
    display name or a list is refused: a recipient or sender is one mailbox."""
    text = value.strip()
    try:
        address = Address(addr_spec=text)
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise ValueError(f"{value!r} is not an email address") from exc
    if not address.username or "." not in address.domain or address.addr_spec != text:
        raise ValueError(f"{value!r} is not an email address such as someone@example.com")
    return text


@dataclass(frozen=True)
class Attachment:
    filename: str
    size: int  # bytes, decoded
    content_type: str


@dataclass(frozen=True)
class InboundMail:
    """What a task needs of a received message: never an attachment's content."""

    sender: str
    subject: str
    text: str
    message_id: str | None
    # The Message-IDs it answers (In-Reply-To, then References, most recent first).
    answers: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)


class NotAnEmail(ValueError):
    """The bytes are not a message Baton can take; says what is missing."""


def parse_message(raw: bytes) -> InboundMail:
    """An RFC 822 message, read with the standard library's default policy. A message
    without a From is refused: a task must say who asked."""
    message = message_from_bytes(raw, policy=policy.default)
    if not isinstance(message, EmailMessage) or not message.keys():
        raise NotAnEmail("the body is not an RFC 822 message (no headers)")
    try:
        sender = str(message.get("From", "")).strip()
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise NotAnEmail(f"the From header cannot be read: {exc}") from exc
    if not sender:
        raise NotAnEmail("the message has no From header")
    return InboundMail(
        sender=sender,
        subject=" ".join(str(message.get("Subject", "")).split()),
        text=_text_of(message),
        message_id=_one_id(message.get("Message-ID")),
        answers=_answered_ids(message),
        attachments=[_attachment(part) for part in message.iter_attachments()],
    )


def _text_of(message: EmailMessage) -> str:
    """The plain-text body, else the HTML one as text, else nothing."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    try:
        content = body.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        payload = body.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if body.get_content_subtype() == "html":
        return _html_text(content)
    return content.strip()


def _html_text(html: str) -> str:
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    return "\n".join(line.strip() for line in "".join(parser.parts).splitlines() if line.strip())


class _TextOfHtml(HTMLParser):
    _SKIPPED = frozenset({"script", "style", "head"})
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _attachment(part: EmailMessage) -> Attachment:
    payload = part.get_payload(decode=True)
    return Attachment(
        filename=part.get_filename() or "(unnamed)",
        size=len(payload) if isinstance(payload, bytes) else 0,
        content_type=part.get_content_type(),
    )


_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


def _one_id(header: object) -> str | None:
    if header is None:
        return None
    found = _MESSAGE_ID.findall(str(header))
    return found[0] if found else (str(header).strip() or None)


def _answered_ids(message: EmailMessage) -> list[str]:
    ids: list[str] = []
    for name in ("In-Reply-To", "References"):
        header = message.get(name)
        found = _MESSAGE_ID.findall(str(header)) if header is not None else []
        # References lists the thread oldest first; the most recent is the likeliest match.
        for message_id in found if name == "In-Reply-To" else reversed(found):
            if message_id not in ids:
                ids.append(message_id)
    return ids


def task_message(mail: InboundMail, *, max_length: int) -> str:
    """What the task is told of a message: who sent it, its subject, its text (cut to fit
    `max_length`), and its attachments by name and size."""
    head = f"Email from {mail.sender}\nSubject: {mail.subject or '(none)'}\n\n"
    tail = ""
    if mail.attachments:
        listed = ", ".join(
            f"{a.filename} ({a.content_type}, {a.size} bytes)" for a in mail.attachments
        )
        tail = f"\n\nAttachments (their content is not included): {listed}"
    text = mail.text or "(no text)"
    room = max_length - len(head) - len(tail)
    if len(text) > room:
        cut = "\n[… the rest of the message was cut]"
        text = text[: max(room - len(cut), 0)] + cut
    return (head + text + tail)[:max_length]
