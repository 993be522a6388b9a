//! zlib streams for permessage-deflate (placeholder, filled in next).
