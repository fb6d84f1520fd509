//! Loading input data: `.npy` files (f32, f64, i32, i64; C order), `.csv` files and
//! number lists. The only IO the library does, and only when asked.

use std::io::Read;
use std::path::Path;

use crate::diagnostic::Diagnostic;
use crate::eval::Array;

/// Largest data file accepted, in bytes.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

fn err(path: &Path, msg: impl std::fmt::Display) -> Diagnostic {
    Diagnostic::error_nowhere(format!("{}: {msg}", path.display()))
}

/// Loads a `.npy` or `.csv` file (chosen by extension; anything else is tried as `.npy`).
///
/// # Errors
/// A missing or unreadable file, a malformed or truncated one, an unsupported dtype
/// (strings, complex, ...), Fortran order, or a non-number in a CSV.
pub fn load(path: &Path) -> Result<Array, Diagnostic> {
    let meta = std::fs::metadata(path).map_err(|e| err(path, format!("cannot read the file: {}", io_reason(&e))))?;
    if meta.is_dir() {
        return Err(err(path, "is a directory, not a data file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(path, format!("the file is too large ({} bytes; the limit is {MAX_FILE_BYTES})", meta.len())));
    }
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read the file: {}", io_reason(&e))))?;
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("txt"));
    if is_csv {
        parse_csv(path, &bytes)
    } else {
        parse_npy(path, &bytes)
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// Deepest bracket nesting accepted in a `.npy` header before it goes to the header parser,
/// whose backtracking takes time exponential in the depth (14 nested braces: seconds; a few
/// more: minutes, found by fuzzing). A plain array's header nests 2 (`{… 'shape': (2, 3)}`);
/// structured dtypes nest deeper and are rejected anyway.
const MAX_HEADER_DEPTH: usize = 6;

/// The deepest nesting of `{`, `(` and `[` in the header of a `.npy` file (`None` when the
/// header's length field is missing; the header parser reports that).
fn header_depth(bytes: &[u8]) -> Option<usize> {
    let (start, len) = match bytes.get(6)? {
        1 => (10usize, usize::from(u16::from_le_bytes([*bytes.get(8)?, *bytes.get(9)?]))),
        _ => (12, u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize),
    };
    let header = bytes.get(start..start.saturating_add(len).min(bytes.len()))?;
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in header {
        match b {
            b'{' | b'(' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Some(deepest)
}

/// Parses the bytes of a `.npy` file.
///
/// # Errors
/// As [`load`].
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Array, Diagnostic> {
    use npyz::{DType, TypeChar};
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err(err(path, "not a .npy file (it does not start with the NumPy magic string)")
            .with_note("help: save arrays with numpy.save, or give a .csv file"));
    }
    if let Some(depth) = header_depth(bytes).filter(|d| *d > MAX_HEADER_DEPTH) {
        return Err(err(
            path,
            format!("malformed .npy header: brackets nested {depth} deep (a plain array's header nests 2)"),
        ));
    }
    let npy = npyz::NpyFile::new(bytes).map_err(|e| err(path, format!("malformed .npy header: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|d| usize::try_from(*d).unwrap_or(usize::MAX)).collect();
    if npy.order() == npyz::Order::Fortran && shape.len() > 1 {
        return Err(err(path, "the array is in Fortran order")
            .with_note("help: save it with numpy.save(path, numpy.ascontiguousarray(a))"));
    }
    let DType::Plain(ty) = npy.dtype() else {
        return Err(err(path, "structured or record arrays are not supported; give a plain numeric array"));
    };
    let size = usize::try_from(ty.size_field()).unwrap_or(usize::MAX);
    let count = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
    let needed = count.and_then(|c| c.checked_mul(size));
    match needed {
        Some(n) if (n as u64) <= bytes.len() as u64 => {}
        _ => {
            return Err(err(
                path,
                format!(
                    "the file is truncated: its header promises {} values of {size} bytes",
                    count.map_or("too many".to_string(), |c| c.to_string())
                ),
            ))
        }
    }
    let data: Result<Vec<f64>, std::io::Error> = match (ty.type_char(), size) {
        (TypeChar::Float, 8) => npy.into_vec::<f64>(),
        (TypeChar::Float, 4) => npy.into_vec::<f32>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Int, 4) => npy.into_vec::<i32>().map(|v| v.into_iter().map(f64::from).collect()),
        #[allow(clippy::cast_precision_loss)]
        (TypeChar::Int, 8) => npy.into_vec::<i64>().map(|v| v.into_iter().map(|x| x as f64).collect()),
        (tc, n) => {
            let what = match tc {
                TypeChar::Complex => "complex numbers".to_string(),
                TypeChar::ByteStr | TypeChar::UnicodeStr | TypeChar::RawData => "strings or raw bytes".to_string(),
                TypeChar::Bool => "booleans".to_string(),
                _ => format!("{tc:?} values of {n} bytes"),
            };
            return Err(err(path, format!("the array holds {what} ({ty}); lossc reads f32, f64, i32 and i64")));
        }
    };
    let data = data.map_err(|e| err(path, format!("the file is truncated or corrupt: {e}")))?;
    Ok(Array { shape, data })
}

/// Parses CSV text: numbers only, one row per line, every row the same length.
///
/// # Errors
/// A non-number (with its line and column), ragged rows, invalid UTF-8.
pub fn parse_csv(path: &Path, bytes: &[u8]) -> Result<Array, Diagnostic> {
    let text = std::str::from_utf8(bytes).map_err(|_| err(path, "not UTF-8 text"))?;
    let mut data = Vec::new();
    let mut rows = 0;
    let mut cols: Option<usize> = None;
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut n = 0;
        let mut col = 1;
        for field in line.split(',') {
            let f = field.trim();
            let v = parse_number(f).ok_or_else(|| {
                Diagnostic::error_nowhere(format!("{}:{}:{col}: error: `{f}` is not a number", path.display(), ln + 1))
            })?;
            data.push(v);
            n += 1;
            col += field.chars().count() + 1;
        }
        match cols {
            None => cols = Some(n),
            Some(c) if c != n => {
                return Err(err(path, format!("line {} has {n} values but the first row has {c}", ln + 1)))
            }
            _ => {}
        }
        rows += 1;
    }
    let shape = match cols {
        None => vec![0],
        Some(1) => vec![rows],
        Some(c) => vec![rows, c],
    };
    Ok(Array { shape, data })
}

/// Reads one number as the command line and CSV files write it (`nan`, `inf` allowed).
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    match t.to_ascii_lowercase().as_str() {
        "true" => return Some(1.0),
        "false" => return Some(0.0),
        _ => {}
    }
    t.parse::<f64>().ok()
}

/// Reads a `.npy` stream (for callers that hold a reader rather than a path).
///
/// # Errors
/// As [`load`].
pub fn read_npy(path: &Path, mut reader: impl Read) -> Result<Array, Diagnostic> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| err(path, e))?;
    parse_npy(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_shapes_and_errors() {
        let p = Path::new("t.csv");
        assert_eq!(parse_csv(p, b"1,2\n3,4\n").map(|a| a.shape), Ok(vec![2, 2]));
        assert_eq!(parse_csv(p, b"1\n2\n3\n").map(|a| a.shape), Ok(vec![3]));
        let e = parse_csv(p, b"1,2\n3,x\n").map(|a| a.shape);
        assert!(e.is_err_and(|d| d.message.starts_with("t.csv:2:3: error: `x`")));
        assert!(parse_csv(p, b"1,2\n3\n").is_err());
    }

    #[test]
    fn npy_rejects_garbage_and_truncation() {
        let p = Path::new("t.npy");
        assert!(parse_npy(p, b"hello").is_err());
        let header = b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }";
        let mut bytes = header.to_vec();
        while !(bytes.len() + 1).is_multiple_of(64) {
            bytes.push(b' ');
        }
        bytes.push(b'\n');
        bytes.extend_from_slice(&[0u8; 16]);
        let e = parse_npy(p, &bytes);
        assert!(e.is_err_and(|d| d.message.contains("truncated")));
    }

    /// Fuzzing found headers that the header parser takes seconds to minutes on (nested
    /// braces); they are rejected before it. Without the check this test does not finish.
    #[test]
    fn npy_deeply_nested_headers_are_rejected_at_once() {
        let p = Path::new("t.npy");
        for depth in [14, 40] {
            let dict = format!("{{'descr': '<f8', 'fortran_order': False,{} 'shape': (2,), }}", "{".repeat(depth));
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&u16::try_from(dict.len() + 1).expect("short").to_le_bytes());
            bytes.extend_from_slice(dict.as_bytes());
            bytes.push(b'\n');
            bytes.extend_from_slice(&[0u8; 16]);
            let e = parse_npy(p, &bytes);
            assert!(e.is_err_and(|d| d.message.contains("nested")), "depth {depth}");
        }
        // A plain header still parses.
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&u16::try_from(dict.len() + 1).expect("short").to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        bytes.extend_from_slice(&(-2.0f64).to_le_bytes());
        assert_eq!(parse_npy(p, &bytes).map(|a| a.data), Ok(vec![1.5, -2.0]));
    }
}
