use super::*;
use proptest::prelude::*;

/// Feeds `input` in pieces of `step` bytes; returns what hyper would read and the refusal.
fn run(input: &[u8], step: usize) -> (Vec<u8>, Option<Refusal>) {
    let mut f = Framing::default();
    let mut out = BytesMut::new();
    for piece in input.chunks(step.max(1)) {
        f.feed(piece, &mut out);
    }
    (out.to_vec(), f.refused())
}

const OK_PIPELINE: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n\
GET /c HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn well_framed_requests_pass_unchanged_at_any_split() {
    for step in [1, 2, 3, 7, 16, 1000] {
        assert_eq!(run(OK_PIPELINE, step), (OK_PIPELINE.to_vec(), None), "step {step}");
    }
}

#[test]
fn bodies_that_look_like_heads_are_not_inspected() {
    let req = b"POST /a HTTP/1.1\r\nContent-Length: 47\r\n\r\nGET /x#y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n";
    assert_eq!(run(req, 5), (req.to_vec(), None));
}

#[test]
fn refusals() {
    let cases: [(&[u8], Refusal); 5] = [
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Refusal::ContentLengthAndTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 0\r\n\r\n",
            Refusal::ContentLengthAndTransferEncoding,
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Refusal::ConflictingContentLength),
        (b"GET /open#/../admin HTTP/1.1\r\n\r\n", Refusal::Fragment),
        (b"GET /a HTTP/1.1\r\n\r\nGET /b#c HTTP/1.1\r\n\r\n", Refusal::Fragment),
    ];
    for (req, why) in cases {
        let (out, refused) = run(req, 3);
        assert_eq!(refused, Some(why), "{:?}", String::from_utf8_lossy(req));
        assert!(out.ends_with(POISON), "{:?}", String::from_utf8_lossy(&out));
    }
    // Identical duplicates are allowed (RFC 9110 §8.6), as hyper allows them.
    let dup = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(run(dup, 4), (dup.to_vec(), None));
}

#[test]
fn http2_preface_passes_through() {
    let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00#anything";
    for step in [1, 5, 100] {
        assert_eq!(run(h2, step), (h2.to_vec(), None), "step {step}");
    }
}

#[test]
fn oversized_heads_are_left_to_hyper() {
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
    let (out, refused) = run(&big, 4096);
    assert_eq!((out, refused), (big, None));
}

proptest! {
    #[test]
    fn never_panics_and_never_invents_bytes(input in proptest::collection::vec(any::<u8>(), 0..400), step in 1usize..50) {
        let (out, refused) = run(&input, step);
        if refused.is_none() {
            prop_assert!(input.starts_with(&out), "output is a prefix of the input");
        }
    }
}
