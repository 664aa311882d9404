"""Email over SMTP: multipart text and HTML, one message per alert.

Feed text reaching a header has control characters removed (an encoded CR LF in a subject
could otherwise add a header, CVE-2024-6923); the HTML part escapes everything.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from watcher.errors import DeliveryError
from watcher.links import safe_link
from watcher.models import Alert
from watcher.notify.base import Notifier, summary_of, title_of
from watcher.text import highlight, one_line


def subject(alert: Alert) -> str:
    return one_line(f"[watcher] {alert.rule}: {title_of(alert)}")[:250]


def message_id(alert: Alert, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "watcher.invalid"
    return f"<{alert.delivery_id}@{domain}>"


def build(alert: Alert, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """The message for one alert; ValueError when an address cannot be used."""
    title = title_of(alert)
    link = safe_link(alert.item.link)
    summary = summary_of(alert, 1000)
    matched = ", ".join(alert.terms)
    published = alert.item.published.strftime("%Y-%m-%d %H:%M UTC") if alert.item.published else ""
    msg = EmailMessage()
    msg["Subject"] = subject(alert)
    msg["From"] = one_line(sender)
    msg["To"] = ", ".join(one_line(address) for address in recipients)
    msg["Date"] = format_datetime(alert.detected_at)
    msg["Message-ID"] = message_id(alert, sender)
    msg["X-Watcher-Delivery"] = alert.delivery_id
    lines = [title, link, "", summary, "", f"Rule: {alert.rule}", f"Matched: {matched}"]
    lines += [f"Feed: {alert.feed_name} ({alert.feed_url})", f"Published: {published}"]
    msg.set_content("\n".join(lines) + "\n")
    e = html.escape
    marked_title = highlight(title, alert.words, _mark, e)
    heading = f'<a href="{e(link)}">{marked_title}</a>' if link else marked_title
    msg.add_alternative(
        f"<html><body><h3>{heading}</h3><p>{highlight(summary, alert.words, _mark, e)}</p>"
        f"<p><small>Rule <b>{e(alert.rule)}</b> · matched {e(matched)} · "
        f"feed {e(alert.feed_name)} · {e(published)}</small></p></body></html>\n",
        subtype="html",
    )
    return msg


def _mark(word: str) -> str:
    return f"<mark>{word}</mark>"


class EmailNotifier(Notifier):
    type = "email"

    def send(self, alert: Alert) -> str | None:
        options = self.options
        try:
            msg = build(alert, options.sender, options.to)
            Address(addr_spec=parseaddr(options.sender)[1])
        except (ValueError, TypeError, IndexError) as exc:
            raise DeliveryError(
                self.name, f"cannot build the message: {exc}", retryable=False
            ) from exc
        try:
            with self._connect() as smtp:
                refused = smtp.send_message(msg)
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
                f"SMTP {exc.smtp_code} {one_line(text)[:120]}",
                retryable=exc.smtp_code < 500,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                self.name, f"SMTP failure: {one_line(str(exc))[:120] or type(exc).__name__}"
            ) from exc
        if refused:
            return f"accepted, but refused for {_codes(refused)}"
        return None

    def _connect(self) -> smtplib.SMTP:
        options = self.options
        if options.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                options.host,
                options.port,
                timeout=self.timeout,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(options.host, options.port, timeout=self.timeout)
        try:
            if options.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if options.username:
                password = options.password.get_secret_value() if options.password else ""
                smtp.login(options.username, password)
        except BaseException:
            smtp.close()
            raise
        return smtp


def _codes(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{address}: {code}" for address, (code, _) in recipients.items())
