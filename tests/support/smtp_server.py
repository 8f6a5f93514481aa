#!/usr/bin/python3
"""A real SMTP server for homeostat's e2e tests: Debian's python3-aiosmtpd.

Listens on 127.0.0.1:PORT with either STARTTLS (``--mode starttls``:
STARTTLS required before anything else, AUTH only after it) or implicit TLS
(``--mode implicit``: TLS from the first byte, as on port 465). AUTH LOGIN
and PLAIN accept exactly the one ``--user``/``--password`` pair, and MAIL is
refused until AUTH succeeded.

The certificate chain is made with the ``openssl`` CLI in ``--certdir``:
``ca.pem`` (a self-signed CA, the file clients trust) and ``server.pem`` /
``server.key`` (CA:FALSE, serverAuth, SAN localhost + 127.0.0.1), because
rustls/webpki refuses a CA certificate used as an end-entity certificate.

Every accepted message N is written to ``--maildir`` as ``N.eml`` (the raw
bytes received) and ``N.json``: envelope (mail_from, rcpt_tos), the login
used, whether TLS was on, decoded headers and every leaf MIME part with its
content type and decoded text. ``N.json`` is renamed into place after
``N.eml``, so a reader that lists ``*.json`` sees whole messages only.

Prints ``READY`` once listening; stops on SIGTERM/SIGINT.
"""

import argparse
import email
import email.policy
import json
import os
import signal
import ssl
import subprocess
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d):
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    key, csr, crt = (os.path.join(d, n) for n in ("server.key", "server.csr", "server.pem"))
    ext = os.path.join(d, "server.ext")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", ca_key, "-out", ca, "-days", "3",
            "-subj", "/CN=homeostat e2e test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", ext)
    return crt, key


class Handler:
    def __init__(self, maildir):
        self.maildir = maildir
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            n = self.n
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            try:
                body = part.get_content()
            except Exception as e:  # undecodable: keep the failure visible
                body = f"<undecodable part: {e}>"
            if isinstance(body, bytes):
                body = body.decode("utf-8", "replace")
            parts.append({
                "content_type": part.get_content_type(),
                "charset": part.get_content_charset(),
                "transfer_encoding": part.get("Content-Transfer-Encoding"),
                "body": body,
            })
        login = None
        if session.auth_data is not None and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "login": login,
            "tls": session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None,
            "content_type": msg.get_content_type(),
            "headers": [[k, str(v)] for k, v in msg.items()],
            "parts": parts,
        }
        eml = os.path.join(self.maildir, f"{n}.eml")
        with open(eml, "wb") as f:
            f.write(raw)
        tmp = os.path.join(self.maildir, f".{n}.json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.rename(tmp, os.path.join(self.maildir, f"{n}.json"))
        print(f"accepted message {n} from {envelope.mail_from} to {envelope.rcpt_tos}", flush=True)
        return "250 2.0.0 Message accepted for delivery"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--certdir", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--mode", choices=["starttls", "implicit"], default="starttls")
    a = ap.parse_args()

    crt, key = make_certs(a.certdir)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)

    user, password = a.user.encode(), a.password.encode()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (mechanism in ("LOGIN", "PLAIN")
              and isinstance(auth_data, LoginPassword)
              and auth_data.login == user and auth_data.password == password)
        print(f"AUTH {mechanism}: {'accepted' if ok else 'refused'}", flush=True)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    common = dict(
        hostname="127.0.0.1",
        port=a.port,
        server_hostname="localhost",
        authenticator=authenticator,
        auth_required=True,
    )
    handler = Handler(a.maildir)
    if a.mode == "starttls":
        controller = Controller(handler, tls_context=ctx, require_starttls=True,
                                auth_require_tls=True, **common)
    else:
        # aiosmtpd only counts STARTTLS as TLS for auth_require_tls, so the
        # implicit-TLS listener (TLS from the first byte) turns it off.
        controller = Controller(handler, ssl_context=ctx, auth_require_tls=False, **common)
    controller.start()
    print("READY", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
