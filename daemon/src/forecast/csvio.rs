//! The CSV shapes of `homeostat forecast backtest` and `homeostat replay`.
//!
//! Owns reading `timestamp,value` series and `origin` lists, and the timestamp format
//! (`YYYY-MM-DD HH:MM:SS`, fractional seconds accepted, read as UTC). Errors name the
//! file, the line and the column.

use std::path::Path;

use homeostat_ml::Series;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{file}: {msg}")]
    File { file: String, msg: String },
    #[error("{file}:{line}: {msg}")]
    Line {
        file: String,
        line: u64,
        msg: String,
    },
}

/// Milliseconds since the epoch of `YYYY-MM-DD HH:MM:SS[.fff]` (or with a `T`), as UTC.
pub fn parse_ts(s: &str) -> Result<i64, String> {
    let dt: DateTime = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a YYYY-MM-DD HH:MM:SS timestamp: {e}"))?;
    let z = dt
        .to_zoned(TimeZone::UTC)
        .map_err(|e| format!("{s:?}: {e}"))?;
    Ok(z.timestamp().as_millisecond())
}

/// The inverse of [`parse_ts`], without fractional seconds when there are none.
pub fn format_ts(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => {
            let dt = t.to_zoned(TimeZone::UTC).datetime();
            if ms.rem_euclid(1000) == 0 {
                dt.strftime("%Y-%m-%d %H:%M:%S").to_string()
            } else {
                dt.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string()
            }
        }
        Err(_) => ms.to_string(),
    }
}

fn reader(path: &Path) -> Result<(csv::Reader<std::fs::File>, String), CsvError> {
    let file = path.display().to_string();
    let r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| CsvError::File {
            file: file.clone(),
            msg: e.to_string(),
        })?;
    Ok((r, file))
}

fn column(r: &mut csv::Reader<std::fs::File>, file: &str, name: &str) -> Result<usize, CsvError> {
    let headers = r.headers().map_err(|e| CsvError::File {
        file: file.to_string(),
        msg: e.to_string(),
    })?;
    headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == name)
        .ok_or_else(|| CsvError::Line {
            file: file.to_string(),
            line: 1,
            msg: format!(
                "no {name:?} column (header is {:?})",
                headers.iter().collect::<Vec<_>>()
            ),
        })
}

/// Reads a `timestamp,value` file and puts it on its regular grid (median spacing,
/// gaps interpolated; see [`Series::regularize`]). Returns the grid and how many grid
/// points had no row.
pub fn read_series(path: &Path) -> Result<(Series, usize), CsvError> {
    let (mut r, file) = reader(path)?;
    let ts_col = column(&mut r, &file, "timestamp")?;
    let v_col = column(&mut r, &file, "value")?;
    let mut points = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| CsvError::File {
            file: file.clone(),
            msg: e.to_string(),
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let bad = |msg: String| CsvError::Line {
            file: file.clone(),
            line,
            msg,
        };
        let ts = parse_ts(rec.get(ts_col).unwrap_or("")).map_err(&bad)?;
        let raw = rec.get(v_col).unwrap_or("");
        let v: f64 = raw
            .parse()
            .map_err(|_| bad(format!("value {raw:?} is not a number")))?;
        if let Some(&(prev, _)) = points.last() {
            if ts <= prev {
                return Err(bad(format!(
                    "timestamp {} is not after the previous row's",
                    rec.get(ts_col).unwrap_or("")
                )));
            }
        }
        points.push((ts, v));
    }
    let series = Series::regularize(&points).map_err(|e| CsvError::File {
        file: file.clone(),
        msg: e.to_string(),
    })?;
    let filled = series.len().saturating_sub(points.len());
    Ok((series, filled))
}

/// Reads the `origin` column of a file (other columns are ignored).
pub fn read_origins(path: &Path) -> Result<Vec<i64>, CsvError> {
    let (mut r, file) = reader(path)?;
    let col = column(&mut r, &file, "origin")?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| CsvError::File {
            file: file.clone(),
            msg: e.to_string(),
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        out.push(
            parse_ts(rec.get(col).unwrap_or("")).map_err(|msg| CsvError::Line {
                file: file.clone(),
                line,
                msg,
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let ms = parse_ts("2014-07-01 00:30:00").unwrap();
        assert_eq!(ms, 1_404_174_600_000);
        assert_eq!(format_ts(ms), "2014-07-01 00:30:00");
        assert_eq!(parse_ts("2023-11-16 18:15:46.6805900").unwrap() % 1000, 680);
        assert!(parse_ts("yesterday").is_err());
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        std::fs::write(
            &p,
            "timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:05:00,x\n",
        )
        .unwrap();
        let e = read_series(&p).unwrap_err().to_string();
        assert!(e.contains("s.csv:3") && e.contains("\"x\""), "{e}");
        std::fs::write(&p, "time,value\n").unwrap();
        assert!(read_series(&p)
            .unwrap_err()
            .to_string()
            .contains("timestamp"));
    }
}
