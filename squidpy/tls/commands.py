"""``squidpy ca``: make the CA that SslBump signs with, and hand it to clients.

Every squidpy command (``squidpy run`` too) loads this module to list its
commands, so cryptography and :mod:`squidpy.tls.ca` are imported by the
commands that use them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from squidpy.cli_options import config_option, config_path, load_config

if TYPE_CHECKING:
    from squidpy.tls.ca import SigningCa


@click.group()
@config_option
def ca():
    """The CA that signs the certificates SslBump mints (init, export)."""


@ca.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", "common_name", help="the CA's common name (default: 'squidpy CA on HOSTNAME')")
@click.option("--days", default=3650, show_default=True, type=click.IntRange(1, 36500), help="how long it is valid")
@click.option("--key-type", type=click.Choice(["rsa", "ec"]), default="rsa", show_default=True,
              help="RSA 2048 (what every client takes) or EC P-256")
@click.option("--permit", multiple=True, metavar="DOMAIN",
              help="name constraint: the CA may only sign for DOMAIN and its subdomains (repeatable)")
@click.option("--exclude", multiple=True, metavar="DOMAIN",
              help="name constraint: the CA may never sign for DOMAIN (repeatable)")
@click.option("--force", is_flag=True, help="replace an existing CA (every client must import the new one)")
def init(directory, common_name, days, key_type, permit, exclude, force):
    """Create a CA fit for bumping in DIRECTORY: squidpy-ca.pem (certificate and key,
    mode 0600, for http_port ... tls-cert=) and squidpy-ca.crt (to import into clients)."""
    from squidpy.tls.ca import CaError, init_ca

    try:
        pem, crt = init_ca(directory, common_name, days, key_type, tuple(permit), tuple(exclude), force)
    except CaError as e:
        click.echo(f"squidpy ca init: {e}", err=True)
        sys.exit(1)
    click.echo(f"created {pem} (certificate and private key, readable by this user only)")
    click.echo(f"created {crt} (the certificate to import into browsers and systems)")
    click.echo("use it with:")
    click.echo(f"  http_port 3128 ssl-bump tls-cert={pem}")
    click.echo(f"then make clients trust it: squidpy ca export {directory}")


def _ca_certificate(path: str) -> SigningCa:
    """The CA certificate in PATH: a directory made by 'ca init', or a PEM/DER file."""
    from cryptography import x509

    from squidpy.tls.ca import CA_FILE, CERT_FILE, CaError, SigningCa, check_signing_ca

    p = Path(path)
    if p.is_dir():
        p = p / CERT_FILE if (p / CERT_FILE).exists() else p / CA_FILE
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CaError(f"cannot read {p}: {e.strerror}") from None
    try:
        cert = x509.load_pem_x509_certificates(data)[0] if b"-----BEGIN" in data else \
            x509.load_der_x509_certificate(data)
    except ValueError:
        raise CaError(f"{p}: no certificate in it") from None
    warnings = check_signing_ca(cert)
    return SigningCa(cert, None, [], str(p), warnings)


def _ca_from_config() -> SigningCa:
    from squidpy.tls.ca import CaError

    config = load_config()
    for port in [*config.http_port, *getattr(config, "https_port", [])]:
        tls = port.tls
        if tls is not None and tls.ssl_bump and tls.certs:
            return _ca_certificate(tls.certs[0][0])
    raise CaError(f"{config.source} has no http_port with ssl-bump and tls-cert=")


@ca.command("export")
@click.argument("path", required=False, type=click.Path())
@config_option
@click.option("--der", is_flag=True, help="DER instead of PEM (Windows, Android and some appliances want it)")
@click.option("--pem-only", is_flag=True, help="the certificate alone, without instructions")
@click.option("-o", "output", type=click.Path(dir_okay=False), help="write to this file instead of stdout")
def export(path, der, pem_only, output):
    """Print the CA certificate clients must trust, with its fingerprints and how to import
    it (Debian, RHEL, macOS, Windows, Chrome/NSS, Firefox, phones).  PATH is a directory
    made by 'squidpy ca init' or a certificate file; without it, -f's ssl-bump port."""
    from cryptography.hazmat.primitives import serialization

    from squidpy.tls.ca import CaError, export_text

    try:
        if path is None and config_path() is None:
            raise CaError("give the CA (a directory made by 'squidpy ca init', or a file) or -f CONFIG "
                          "(its ssl-bump port's CA)")
        signing = _ca_certificate(path) if path is not None else _ca_from_config()
    except CaError as e:
        click.echo(f"squidpy ca export: {e}", err=True)
        sys.exit(1)
    for warning in signing.warnings:
        click.echo(f"squidpy ca export: warning: {warning}", err=True)
    if der:
        data = signing.cert.public_bytes(serialization.Encoding.DER)
    elif pem_only:
        data = signing.cert.public_bytes(serialization.Encoding.PEM)
    else:
        data = export_text(signing).encode()
    if output:
        Path(output).write_bytes(data)
        click.echo(f"wrote {output}", err=True)
    elif der:
        sys.stdout.buffer.write(data)
    else:
        click.echo(data.decode(), nl=False)
