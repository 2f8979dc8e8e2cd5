//! The few DER structures key material arrives in: X.509 certificates (only to reach their
//! SubjectPublicKeyInfo), SPKI itself, the algorithm of a PKCS#8 private key, and PKCS#1
//! `RSAPublicKey`. Also the writer for the SPKI of berth's own keys.
//!
//! Certificates are containers for a trusted key here, nothing more: chains, validity periods and
//! extensions are not examined, as CNCF distribution does with its `rootcertbundle`.

/// The input is not the DER structure expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadDer(pub &'static str);

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const NULL: u8 = 0x05;
const VERSION_TAG: u8 = 0xa0;

pub const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
pub const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A cursor over consecutive DER elements.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one element, returning its contents and its whole encoding.
    fn element(&mut self, tag: u8) -> Result<(&'a [u8], &'a [u8]), BadDer> {
        let start = self.rest;
        let (&t, rest) = start.split_first().ok_or(BadDer("truncated"))?;
        if t != tag {
            return Err(BadDer("unexpected element"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(BadDer("truncated"))?;
        let len = match first {
            0..=0x7f => usize::from(first),
            0x81..=0x83 => {
                let n = usize::from(first & 0x7f);
                let (bytes, after) = rest.split_at_checked(n).ok_or(BadDer("truncated"))?;
                rest = after;
                let len = bytes
                    .iter()
                    .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
                // DER demands the shortest length form.
                if len < 0x80 || bytes.first() == Some(&0) {
                    return Err(BadDer("non-minimal length"));
                }
                len
            }
            _ => return Err(BadDer("unsupported length")),
        };
        let (contents, after) = rest.split_at_checked(len).ok_or(BadDer("truncated"))?;
        let (whole, _) = start
            .split_at_checked(start.len() - after.len())
            .ok_or(BadDer("truncated"))?;
        self.rest = after;
        Ok((contents, whole))
    }

    fn contents(&mut self, tag: u8) -> Result<&'a [u8], BadDer> {
        Ok(self.element(tag)?.0)
    }

    fn finish(&self) -> Result<(), BadDer> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(BadDer("trailing data"))
        }
    }
}

/// Returns the whole SubjectPublicKeyInfo element of an X.509 certificate.
pub fn certificate_spki(cert: &[u8]) -> Result<&[u8], BadDer> {
    let mut outer = Reader::new(cert);
    let certificate = outer.contents(SEQUENCE)?;
    outer.finish()?;
    let mut tbs = Reader::new(Reader::new(certificate).contents(SEQUENCE)?);
    if tbs.peek() == Some(VERSION_TAG) {
        tbs.contents(VERSION_TAG)?;
    }
    tbs.contents(INTEGER)?; // serial number
    for _ in 0..4 {
        tbs.contents(SEQUENCE)?; // signature algorithm, issuer, validity, subject
    }
    Ok(tbs.element(SEQUENCE)?.1)
}

/// An SPKI split into its algorithm OID, the curve OID (EC keys only) and the key bits.
pub struct Spki<'a> {
    pub algorithm: &'a [u8],
    pub curve: Option<&'a [u8]>,
    pub key: &'a [u8],
}

pub fn parse_spki(spki: &[u8]) -> Result<Spki<'_>, BadDer> {
    let mut outer = Reader::new(spki);
    let mut inner = Reader::new(outer.contents(SEQUENCE)?);
    outer.finish()?;
    let (algorithm, curve) = algorithm_identifier(inner.contents(SEQUENCE)?)?;
    let bits = inner.contents(BIT_STRING)?;
    inner.finish()?;
    match bits.split_first() {
        Some((0, key)) => Ok(Spki {
            algorithm,
            curve,
            key,
        }),
        _ => Err(BadDer("public key bit string")),
    }
}

/// Returns the algorithm and curve OIDs of a PKCS#8 `PrivateKeyInfo`.
pub fn pkcs8_algorithm(pkcs8: &[u8]) -> Result<(&[u8], Option<&[u8]>), BadDer> {
    let mut inner = Reader::new(Reader::new(pkcs8).contents(SEQUENCE)?);
    inner.contents(INTEGER)?; // version
    algorithm_identifier(inner.contents(SEQUENCE)?)
}

fn algorithm_identifier(contents: &[u8]) -> Result<(&[u8], Option<&[u8]>), BadDer> {
    let mut r = Reader::new(contents);
    let algorithm = r.contents(OID)?;
    let curve = match r.peek() {
        Some(OID) => Some(r.contents(OID)?),
        Some(NULL) => {
            r.contents(NULL)?;
            None
        }
        _ => None,
    };
    r.finish()?;
    Ok((algorithm, curve))
}

/// Splits a PKCS#1 `RSAPublicKey` into modulus and exponent, without leading zero bytes.
pub fn rsa_public_key(der: &[u8]) -> Result<(&[u8], &[u8]), BadDer> {
    let mut outer = Reader::new(der);
    let mut inner = Reader::new(outer.contents(SEQUENCE)?);
    outer.finish()?;
    let n = inner.contents(INTEGER)?;
    let e = inner.contents(INTEGER)?;
    inner.finish()?;
    Ok((strip_zeros(n), strip_zeros(e)))
}

pub fn strip_zeros(mut bytes: &[u8]) -> &[u8] {
    while let Some((0, rest)) = bytes.split_first() {
        bytes = rest;
    }
    bytes
}

fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![tag];
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn unsigned_integer(value: &[u8]) -> Vec<u8> {
    let value = strip_zeros(value);
    match value.first() {
        Some(b) if b & 0x80 == 0 => tlv(INTEGER, &[value]),
        _ => tlv(INTEGER, &[&[0], value]),
    }
}

/// Writes an SPKI; `curve` is the named-curve parameter of EC keys, RSA gets a NULL parameter.
pub fn write_spki(algorithm: &[u8], curve: Option<&[u8]>, key: &[u8]) -> Vec<u8> {
    let params = match curve {
        Some(c) => tlv(OID, &[c]),
        None if algorithm == OID_RSA => tlv(NULL, &[]),
        None => Vec::new(),
    };
    let alg = tlv(SEQUENCE, &[&tlv(OID, &[algorithm]), &params]);
    tlv(SEQUENCE, &[&alg, &tlv(BIT_STRING, &[&[0], key])])
}

/// Writes a PKCS#1 `RSAPublicKey` from big-endian modulus and exponent.
pub fn write_rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &[&unsigned_integer(n), &unsigned_integer(e)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_round_trips_through_writer_and_parser() {
        let key = [7u8; 65];
        let der = write_spki(OID_EC, Some(OID_P256), &key);
        let spki = parse_spki(&der).unwrap();
        assert_eq!(
            (spki.algorithm, spki.curve, spki.key),
            (OID_EC, Some(OID_P256), &key[..])
        );
    }

    #[test]
    fn rsa_public_key_round_trips_with_sign_padding() {
        let n = [0x80u8; 300];
        let der = write_rsa_public_key(&n, &[1, 0, 1]);
        assert_eq!(rsa_public_key(&der).unwrap(), (&n[..], &[1u8, 0, 1][..]));
    }

    #[test]
    fn malformed_der_is_refused() {
        let der = write_spki(OID_ED25519, None, &[1; 32]);
        assert!(parse_spki(&der[..der.len() - 1]).is_err(), "truncated");
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(parse_spki(&trailing).is_err(), "trailing bytes");
        // A long-form length for a short element is not DER.
        assert_eq!(
            Reader::new(&[0x30, 0x81, 0x01, 0x00]).contents(SEQUENCE),
            Err(BadDer("non-minimal length"))
        );
        assert!(
            certificate_spki(&der).is_err(),
            "an SPKI is not a certificate"
        );
    }
}
