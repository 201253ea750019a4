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
        assert_eq!(
            run(OK_PIPELINE, step),
            (OK_PIPELINE.to_vec(), None),
            "step {step}"
        );
    }
}

#[test]
fn a_partial_head_is_known_to_be_held() {
    let mut f = Framing::default();
    let mut out = BytesMut::new();
    assert!(!f.holds_partial_head());
    f.feed(b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nab", &mut out);
    assert!(!f.holds_partial_head(), "body bytes are not a head");
    f.feed(b"cGET / HT", &mut out);
    assert!(f.holds_partial_head(), "the start of a pipelined head");
    f.feed(b"TP/1.1\r\n\r\n", &mut out);
    assert!(!f.holds_partial_head());
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
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            Refusal::ConflictingContentLength,
        ),
        (b"GET /open#/../admin HTTP/1.1\r\n\r\n", Refusal::Fragment),
        (
            b"GET /a HTTP/1.1\r\n\r\nGET /b#c HTTP/1.1\r\n\r\n",
            Refusal::Fragment,
        ),
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
fn http2_preface_passes_through_only_at_the_start() {
    let late = b"GET / HTTP/1.1\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    assert_eq!(
        run(late, 3).1,
        Some(Refusal::Unjudgeable),
        "a preface after a request is not HTTP/2"
    );
    let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00#anything";
    for step in [1, 5, 100] {
        assert_eq!(run(h2, step), (h2.to_vec(), None), "step {step}");
    }
}

#[test]
fn oversized_heads_are_refused() {
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
    let (out, refused) = run(&big, 4096);
    assert_eq!(
        (out, refused),
        (POISON.to_vec(), Some(Refusal::Unjudgeable))
    );
}

#[test]
fn leading_empty_lines_and_bare_lf_heads_are_judged_like_hyper_parses_them() {
    // Empty lines before the request line must not hide the head from the guard.
    let sneaky =
        b"\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    for step in [1, 3, 100] {
        assert_eq!(
            run(sneaky, step).1,
            Some(Refusal::ContentLengthAndTransferEncoding),
            "step {step}"
        );
    }
    // A bare-LF head ends where httparse says, so the next request is judged on its own.
    let pipelined =
        b"GET / HTTP/1.1\nHost: a\n\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for step in [1, 7, 200] {
        let (out, refused) = run(pipelined, step);
        assert_eq!(
            refused,
            Some(Refusal::ContentLengthAndTransferEncoding),
            "step {step}"
        );
        assert!(
            out.starts_with(b"GET / HTTP/1.1\nHost: a\n\n"),
            "the first request passes"
        );
    }
    let single = b"GET /x HTTP/1.1\nHost: a\n\n";
    assert_eq!(run(single, 2), (single.to_vec(), None));
    let blank = b"\r\n\nGET / HTTP/1.1\r\n\r\n";
    assert_eq!(run(blank, 1), (blank.to_vec(), None));
}

#[test]
fn what_cannot_be_judged_is_refused() {
    let cases: [(&[u8], Refusal); 5] = [
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            Refusal::Unjudgeable,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            Refusal::Unjudgeable,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
            Refusal::Unjudgeable,
        ),
        (
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            Refusal::Unjudgeable,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            Refusal::BadChunk,
        ),
    ];
    for (req, why) in cases {
        assert_eq!(
            run(req, 5).1,
            Some(why),
            "{:?}",
            String::from_utf8_lossy(req)
        );
    }
    let mut long_ext = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    long_ext.extend(std::iter::repeat_n(b'e', MAX_LINE + 1));
    assert_eq!(run(&long_ext, 4096).1, Some(Refusal::BadChunk));
}

#[test]
fn chunk_sizes_hyper_accepts_are_followed() {
    let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005;name=value\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
    for step in [1, 4, 1000] {
        assert_eq!(run(req, step), (req.to_vec(), None), "step {step}");
    }
    let mut ext = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    ext.extend(std::iter::repeat_n(b'e', 2048));
    ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(run(&ext, 512), (ext.clone(), None));
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
