"""An aiosmtpd handler for the tests: every message the SMTP server accepts is parsed with
Python's email package and written as one JSON file (envelope, headers, decoded text and HTML
parts), plus the raw message, into the folder named on the command line.

Run as:  python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c sink.JsonSink DIR   (PYTHONPATH=tests/smtp)

The server is aiosmtpd's own (a real SMTP implementation from PyPI); this file only decides
where accepted mail goes, as its Maildir handler would.
"""

import email
import email.policy
import json
import os
import uuid


class JsonSink:
    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("JsonSink takes one argument: the folder")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "subject": str(msg.get("Subject", "")),
            "message_id": str(msg.get("Message-ID", "")),
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        name = uuid.uuid4().hex
        with open(os.path.join(self.folder, name + ".eml"), "wb") as f:
            f.write(raw)
        tmp = os.path.join(self.folder, "." + name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.folder, name + ".json"))
        return "250 Message accepted for delivery"
