//! UTC calendar dates of event times. One conversion, so no date crate: the views key revenue
//! by day, the gateway checks card expiry by month, analytics tests name days.

/// The UTC (year, month 1–12, day 1–31) of `ms` milliseconds since the Unix epoch (Howard
/// Hinnant's civil-from-days, exact for every day of the proleptic Gregorian calendar).
pub fn utc_date(ms: i64) -> (i64, u32, u32) {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn event_times_fall_on_their_civil_dates() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_date(1_765_065_600_000), (2025, 12, 7));
        assert_eq!(utc_date(1_765_065_599_999), (2025, 12, 6));
        assert_eq!(utc_date(951_782_400_000), (2000, 2, 29));
        assert_eq!(utc_date(-1), (1969, 12, 31));
    }
}
