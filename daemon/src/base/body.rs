//! Reading an HTTP body (a request's, or a camera's or a receiver's answer)
//! whole, within a size limit, without letting its sender pin memory.

use bytes::Buf;
use http_body_util::BodyExt;

/// Why a body could not be read whole.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is over {0} bytes")]
    TooLarge(usize),
    #[error("the body could not be read: {0}")]
    Broken(String),
}

/// The body's bytes, at most `limit` of them, copied out as each piece
/// arrives. Each piece hyper hands over is a view of its read buffer
/// (8 KiB): keeping the pieces, as a collecting body does, holds one such
/// buffer per piece, so a sender trickling its body one byte per read made
/// 64 KiB of body hold 512 MiB. Copying and dropping each piece lets hyper
/// reuse its one buffer.
pub async fn read_whole<B>(mut body: B, limit: usize) -> Result<Vec<u8>, BodyError>
where
    B: hyper::body::Body + Unpin,
    B::Error: std::fmt::Display,
{
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
        if let Ok(mut data) = frame.into_data() {
            if out.len().saturating_add(data.remaining()) > limit {
                return Err(BodyError::TooLarge(limit));
            }
            while data.has_remaining() {
                let piece = data.chunk();
                let n = piece.len();
                out.extend_from_slice(piece);
                data.advance(n);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Full, StreamBody};

    type Piece = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>;

    fn pieces(n: usize, size: usize) -> StreamBody<futures::stream::Iter<std::vec::IntoIter<Piece>>> {
        let v: Vec<Piece> = (0..n)
            .map(|i| Ok(hyper::body::Frame::data(Bytes::from(vec![i as u8; size]))))
            .collect();
        StreamBody::new(futures::stream::iter(v))
    }

    #[tokio::test]
    async fn pieces_are_joined_and_the_limit_is_exact() {
        let got = read_whole(pieces(5, 3), 15).await.unwrap();
        assert_eq!(got, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
        assert_eq!(read_whole(pieces(5, 3), 14).await, Err(BodyError::TooLarge(14)));
        assert_eq!(read_whole(Full::new(Bytes::new()), 0).await, Ok(Vec::new()));
    }
}
