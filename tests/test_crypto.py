"""bot.feishu.crypto against the published and self-computed vectors of the reference (§1.3, §1.4, §3.2)."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.feishu.crypto import DecryptError, PayloadCipher, card_signature_v1, event_signature

# Feishu's documented sample (feishu-protocol §1.3, vector 1).
DOC_KEY = "test key"
DOC_CIPHERTEXT = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="

# From the Go SDK's dispatcher test (feishu-protocol §1.3, vector 2).
GO_KEY = "1212121212"
GO_CIPHERTEXT = (
    "bZ3L7yh6m3Fkuffl4g+3uGjIHnhOm5fVZbKVuyT8t7tcd5ABMYm8l28/X900ZL3knZ7n+sCREu/H2WnIzft0amC7+xWqNH8o25IU6"
    "3N4BnZWfHh+4hyG76QPd19vkw2bPJCx9aqxK8Nz+xqFNbk0RdgyWhmgd30jSxHtcQXAllkI7FMpGpOCteJad3bLXPDBQIV/xkCtKI"
    "CCS7Z63gakpxZCLaRZ3qCXP1fapHh+LBIupxenrU6ysc7I3nHmjmKie41IiWwS5puG4zQHhVbq6KWLcgWm/3NBZOPQy53ucMu75SX"
    "A55I7jarVLZXWUcqBGrcgE3vouWbtwgZuzmoTQl0GSh5VYSVvpW992BuGxUWj0XjPYdICJm6Cr7xouNXwMcdb7N8caVdkdSZeEnsw"
    "G19qSyDoQhklwzNGW0yiaayulBqJNjfge/G5V3401c2XaIuAeEIo+QQ4RSNpRGfnHkbu/j55FGQAGWjpuBNaIwZbaUoVP3NkGP+vM"
    "5rpEDe3sL2GN+Xsd+g9yBs7FqdMV8mXTGgLjCqjrPrke5/km76Q3Pe6KPs2YexMRG4MkSx3xUTzZnNn7zIzShPcjeSwBd2pxk6ht5"
    "N+fzueZdxl6Oo="
)
# The body the Go SDK's mockEventReq signs (feishu-protocol §1.4, second self-computed vector).
GO_SIGNED_BODY = (
    '{"schema":"2.0","header":{"event_id":"f7984f25108f8137722bb63cee927e66",'
    '"event_type":"contact.user.created_v3","app_id":"cli_xxxxxxxx","tenant_key":"xxxxxxx",'
    '"create_time":"1603977298000000","token":"v"},"event":{"object":{'
    '"open_id":"ou_7dab8a3d3cdcc9da365777c7ad535d62","union_id":"on_576833b917gda3d939b9a3c2d53e72c8",'
    '"user_id":"e33ggbyz","name":"张三","employee_no":"employee_no"}},"challenge":"1212","type":"url_verification"}'
)


def test_doc_vector_decrypts_to_hello_world() -> None:
    assert PayloadCipher(DOC_KEY).decrypt(DOC_CIPHERTEXT) == b"hello world"


def test_go_vector_decrypts_to_the_documented_event() -> None:
    payload = json.loads(PayloadCipher(GO_KEY).decrypt(GO_CIPHERTEXT))
    assert payload["schema"] == "2.0"
    assert payload["header"]["event_id"] == "f7984f25108f8137722bb63cee927e66"
    assert payload["header"]["event_type"] == "contact.user.created_v3"
    assert payload["header"]["token"] == "v"
    assert payload["type"] == "url_verification"


def test_event_signature_vectors() -> None:
    body = json.dumps({"encrypt": DOC_CIPHERTEXT}, separators=(",", ":")).encode()
    assert body == b'{"encrypt":"P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="}'
    assert (
        event_signature("1700000000", "abc123", DOC_KEY, body)
        == "69c61fa99760d59824d588297c0036194769fb54331682c9cbcd93e85b9a8aad"
    )
    assert (
        event_signature("timestamp", "nonce", GO_KEY, GO_SIGNED_BODY.encode())
        == "4dca085198cb3216defc5b65b0668c1328b038a22dbadf2bc6c4fdc3d32bbc45"
    )


def test_legacy_card_signature_vector() -> None:
    signature = card_signature_v1("1700000000", "abc123", "my_verification_token", b'{"open_id":"ou_x"}')
    assert signature == "0aebf387a76b9f2476a4eff15f3526de4b92185a"


def test_wrong_key_is_a_decrypt_error() -> None:
    with pytest.raises(DecryptError):
        PayloadCipher("another key").decrypt(DOC_CIPHERTEXT)


@given(key=st.text(min_size=1, max_size=64), plaintext=st.binary(max_size=2048))
def test_encrypt_then_decrypt_round_trips(key: str, plaintext: bytes) -> None:
    cipher = PayloadCipher(key)
    sealed = cipher.encrypt(plaintext)
    assert base64.b64decode(sealed, validate=True)  # standard base64, as Feishu sends it
    assert cipher.decrypt(sealed) == plaintext


@given(garbage=st.text(max_size=512))
def test_arbitrary_strings_only_ever_raise_decrypt_error(garbage: str) -> None:
    with contextlib.suppress(DecryptError):
        PayloadCipher(DOC_KEY).decrypt(garbage)


@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_tampered_ciphertext_decrypts_differently_or_raises_decrypt_error(position: int, flip: int) -> None:
    blob = bytearray(base64.b64decode(DOC_CIPHERTEXT))
    blob[position % len(blob)] ^= flip
    try:
        result = PayloadCipher(DOC_KEY).decrypt(base64.b64encode(bytes(blob)).decode())
    except DecryptError:
        return
    # CBC has no integrity: a flipped byte may still unpad, but never back to the original.
    assert result != b"hello world"


@pytest.mark.parametrize(
    "encrypted",
    [
        "",
        "not base64!",
        DOC_CIPHERTEXT[:-4],  # truncated
        base64.b64encode(b"\x00" * 15).decode(),  # shorter than IV + one block
        base64.b64encode(b"\x00" * 40).decode(),  # not a whole number of blocks
        DOC_CIPHERTEXT + "AAAA",
    ],
)
def test_malformed_inputs_raise_decrypt_error(encrypted: str) -> None:
    with pytest.raises(DecryptError):
        PayloadCipher(DOC_KEY).decrypt(encrypted)
