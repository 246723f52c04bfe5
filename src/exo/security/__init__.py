"""Exo-OS security core: TPM measured boot and attestation, HSM keys, post-quantum
hybrids, known-answer self-tests, the tamper-evident audit chain and sealed files.

One module per mechanism (docs/security.md). Nothing here is imported on the boot path
before the prompt: the boot table names ``exo.security.subsystem:Security`` (DEFERRED),
and the heavy libraries (tpm2-pytss, python-pkcs11, cryptography, PyNaCl) load inside the
functions that need them.
"""
