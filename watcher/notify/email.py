"""Email over SMTP: multipart text and HTML, one message per alert.

Feed text reaching a header has control characters removed (an encoded CR LF in a subject
could otherwise add a header, CVE-2024-6923); the HTML part escapes everything.
"""

from __future__ import annotations

import html
import smtplib
import socket
import ssl
from collections.abc import Callable
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Annotated, Any, Literal

from markupsafe import Markup
from pydantic import BeforeValidator, Field, SecretStr

from watcher.errors import DeliveryError
from watcher.links import safe_link
from watcher.models import Alert, Digest
from watcher.notify import templates
from watcher.notify.base import Deadline, Notifier, digest_heading, more_sources, title_of
from watcher.notify.options import NotifierOptions
from watcher.notify.registry import Channel
from watcher.text import one_line

if TYPE_CHECKING:
    import jinja2


def _addresses(value: object) -> object:
    """One address may be written without a list: ``to: desk@example.org``."""
    return [value] if isinstance(value, str) else value


class EmailOptions(NotifierOptions):
    type: Literal["email"]
    to: Annotated[tuple[str, ...], BeforeValidator(_addresses)] = Field(min_length=1)
    sender: str = Field(alias="from")
    host: str  # empty: the notifier is disabled
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    template: str | None = None  # Jinja2 file for the HTML part

    @property
    def enabled(self) -> bool:
        return bool(self.host)


def subject(alert: Alert) -> str:
    return one_line(f"[watcher] {alert.rule}: {title_of(alert)}")[:250]


def _headers(
    subject_line: str, sender: str, recipients: tuple[str, ...], sent: datetime, delivery_id: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = one_line(subject_line)[:250]
    msg["From"] = one_line(sender)
    msg["To"] = ", ".join(one_line(address) for address in recipients)
    msg["Date"] = format_datetime(sent)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "watcher.invalid"
    msg["Message-ID"] = f"<{delivery_id}@{domain}>"
    msg["X-Watcher-Delivery"] = delivery_id
    return msg


def build_digest(digest: Digest, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """One message listing every alert of a digest window."""
    heading = digest_heading(digest)
    msg = _headers(f"[watcher] {heading}", sender, recipients, digest.end, digest.digest_id)
    lines, items = [heading, ""], []
    e = html.escape
    for alert in digest.alerts:
        title, link = title_of(alert), safe_link(alert.item.link)
        sources = more_sources(alert)
        lines += [
            f"- {title}",
            f"  {link}" if link else "",
            f"  {alert.rule}, {alert.feed_name}{sources}",
        ]
        shown = f'<a href="{e(link)}">{e(title)}</a>' if link else e(title)
        where = f"{e(alert.rule)} · {e(alert.feed_name)}{e(sources)}"
        items.append(f"<li>{shown} <small>{where}</small></li>")
    msg.set_content("\n".join(line for line in lines if line) + "\n")
    msg.add_alternative(
        f"<html><body><h3>{e(heading)}</h3><ul>{''.join(items)}</ul></body></html>\n",
        subtype="html",
    )
    return msg


def build(
    alert: Alert,
    sender: str,
    recipients: tuple[str, ...],
    html_template: jinja2.Template | None = None,
) -> EmailMessage:
    """The message for one alert; ValueError when an address cannot be used."""
    msg = _headers(subject(alert), sender, recipients, alert.detected_at, alert.delivery_id)
    plain = templates.context(alert, str, str, summary_limit=1000)
    msg.set_content(templates.load("email.txt", "text").render(plain))
    marked = templates.context(alert, _mark, html.escape, Markup, summary_limit=1000)
    html_part = html_template or templates.load("email.html", "html")
    msg.add_alternative(html_part.render(marked), subtype="html")
    return msg


def _mark(word: str) -> str:
    return f"<mark>{word}</mark>"


class EmailNotifier(Notifier):
    options: EmailOptions

    def __init__(self, name: str, options: Any, **shared: Any) -> None:
        super().__init__(name, options, **shared)
        self.template = templates.load("email.html", "html", path=options.template)

    def send(self, alert: Alert) -> str | None:
        options = self.options
        return self._send(lambda: build(alert, options.sender, options.to, self.template))

    def send_digest(self, digest: Digest) -> str | None:
        return self._send(lambda: build_digest(digest, self.options.sender, self.options.to))

    def _send(self, make: Callable[[], EmailMessage]) -> str | None:
        try:
            msg = make()
            Address(addr_spec=parseaddr(self.options.sender)[1])
        except (ValueError, TypeError, IndexError) as exc:
            raise DeliveryError(
                self.name, f"cannot build the message: {exc}", retryable=False
            ) from exc
        try:
            with Deadline(self.timeout) as deadline:
                try:
                    refused = self._converse(msg, deadline)
                except (smtplib.SMTPServerDisconnected, OSError) as exc:
                    if deadline.expired:
                        raise DeliveryError(
                            self.name, f"timed out after {self.timeout:g}s"
                        ) from exc
                    raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            retryable = any(400 <= code < 500 for code in codes)
            raise DeliveryError(
                self.name,
                f"every recipient refused ({_codes(exc.recipients)})",
                retryable=retryable,
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(self.name, f"SMTP login refused ({exc.smtp_code})") from exc
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise DeliveryError(
                self.name,
                f"SMTP {exc.smtp_code} {self.redact(one_line(text))[:120]}",
                retryable=exc.smtp_code < 500,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            text = self.redact(one_line(str(exc)))[:120]
            raise DeliveryError(self.name, f"SMTP failure: {text or type(exc).__name__}") from exc
        if refused:
            return f"accepted, but refused for {_codes(refused)}"
        return None

    def _converse(self, msg: EmailMessage, deadline: Deadline) -> dict[str, tuple[int, bytes]]:
        """Connect, log in, send; the deadline bounds the whole conversation. Once the
        server accepted the message, a failing goodbye changes nothing."""
        options = self.options
        smtp: smtplib.SMTP
        if options.security == "ssl":
            smtp = _SMTPSSL(deadline, timeout=self.timeout, context=ssl.create_default_context())
        else:
            smtp = _SMTP(deadline, timeout=self.timeout)
        try:
            smtp.connect(options.host, options.port)
            if options.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if options.username:
                password = options.password.get_secret_value() if options.password else ""
                smtp.login(options.username, password)
            refused = smtp.send_message(msg)
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            return refused
        finally:
            smtp.close()


class _SMTP(smtplib.SMTP):
    """An SMTP client whose socket the deadline watches from the moment it connects."""

    def __init__(self, deadline: Deadline, **options: Any) -> None:
        self.deadline = deadline
        super().__init__(**options)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self.deadline.watch(sock)
        return sock


class _SMTPSSL(smtplib.SMTP_SSL):
    """Over TLS from the start: the plain socket is watched before the handshake."""

    def __init__(self, deadline: Deadline, **options: Any) -> None:
        self.deadline = deadline
        super().__init__(**options)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout, self.source_address)
        self.deadline.watch(sock)
        return self.context.wrap_socket(sock, server_hostname=self._host)  # type: ignore[attr-defined]


def _codes(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{address}: {code}" for address, (code, _) in recipients.items())


CHANNEL = Channel(EmailOptions, EmailNotifier)
