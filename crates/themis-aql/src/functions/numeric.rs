//! Numeric functions and the aggregate functions over arrays (`SUM()`,
//! `AVERAGE()`, `MIN()`, `MEDIAN()` ...).
//!
//! Scalar functions convert their arguments with `TO_NUMBER`; a result that is
//! not a finite number (`LOG(0)`, `SQRT(-1)`) is `null`. Aggregates take an
//! array, skip `null` elements and return `null` for a non-array; the numeric
//! ones (`SUM`, `AVERAGE`, ...) also return `null` if an element is neither a
//! number nor `null`, while `MIN`/`MAX` compare any values in AQL's order.

use std::cmp::Ordering;

use serde_json::Value;

use super::{arg, det, nondet, ok_null, ok_num, Def};
use crate::error::{ErrorKind, QueryError};
use crate::value;

pub(super) const DEFS: &[Def] = &[
    det("ABS", 1, 1, abs, "ABS(value) → number: the absolute value"),
    det("CEIL", 1, 1, ceil, "CEIL(value) → number: the smallest integer not less than value"),
    det("FLOOR", 1, 1, floor, "FLOOR(value) → number: the largest integer not greater than value"),
    det("ROUND", 1, 1, round, "ROUND(value) → number: the nearest integer, halves rounded up (ROUND(-2.5) is -2)"),
    det("SQRT", 1, 1, sqrt, "SQRT(value) → number|null: the square root (null for negative values)"),
    det("POW", 2, 2, pow, "POW(base, exp) → number|null: base raised to exp"),
    det("EXP", 1, 1, exp, "EXP(value) → number: e raised to value"),
    det("EXP2", 1, 1, exp2, "EXP2(value) → number: 2 raised to value"),
    det("LOG", 1, 1, log, "LOG(value) → number|null: the natural logarithm (null for values ≤ 0)"),
    det("LOG2", 1, 1, log2, "LOG2(value) → number|null: the base-2 logarithm (null for values ≤ 0)"),
    det("LOG10", 1, 1, log10, "LOG10(value) → number|null: the base-10 logarithm (null for values ≤ 0)"),
    det("SIN", 1, 1, sin, "SIN(radians) → number: the sine"),
    det("COS", 1, 1, cos, "COS(radians) → number: the cosine"),
    det("TAN", 1, 1, tan, "TAN(radians) → number: the tangent"),
    det("ASIN", 1, 1, asin, "ASIN(value) → number|null: the arcsine (null outside -1..1)"),
    det("ACOS", 1, 1, acos, "ACOS(value) → number|null: the arccosine (null outside -1..1)"),
    det("ATAN", 1, 1, atan, "ATAN(value) → number: the arctangent"),
    det("ATAN2", 2, 2, atan2, "ATAN2(y, x) → number: the arctangent of y/x, using the signs of both"),
    det("RADIANS", 1, 1, radians, "RADIANS(degrees) → number: degrees converted to radians"),
    det("DEGREES", 1, 1, degrees, "DEGREES(radians) → number: radians converted to degrees"),
    det("PI", 0, 0, pi, "PI() → number: 3.141592653589793"),
    nondet("RAND", 0, 0, rand, "RAND() → number: a pseudo-random number between 0 and 1 (exclusive)"),
    nondet("RANDOM", 0, 0, rand, "RANDOM() → number: alias of RAND()"),
    det("RANGE", 2, 3, range, "RANGE(start, stop, step?) → array: numbers from start to stop inclusive; without step, integers (bounds truncated)"),
    det("SUM", 1, 1, sum, "SUM(array) → number|null: the total of the numbers (nulls skipped; 0 for an empty array)"),
    det("AVERAGE", 1, 1, average, "AVERAGE(array) → number|null: the arithmetic mean (nulls skipped; null for no numbers)"),
    det("AVG", 1, 1, average, "AVG(array) → number|null: alias of AVERAGE()"),
    det("MIN", 1, 1, min, "MIN(array) → any: the smallest element in AQL's order, nulls skipped (null if none)"),
    det("MAX", 1, 1, max, "MAX(array) → any: the greatest element in AQL's order, nulls skipped (null if none)"),
    det("MEDIAN", 1, 1, median, "MEDIAN(array) → number|null: the median of the numbers (the mean of the two middle ones for an even count)"),
    det("PERCENTILE", 2, 3, percentile, "PERCENTILE(array, p, method?) → number|null: the p-th percentile (0 ≤ p ≤ 100), method \"rank\" (default) or \"interpolation\""),
    det("PRODUCT", 1, 1, product, "PRODUCT(array) → number|null: the product of the numbers (1 for an empty array)"),
    det("VARIANCE_POPULATION", 1, 1, variance_population, "VARIANCE_POPULATION(array) → number|null: the population variance"),
    det("VARIANCE", 1, 1, variance_population, "VARIANCE(array) → number|null: alias of VARIANCE_POPULATION()"),
    det("VARIANCE_SAMPLE", 1, 1, variance_sample, "VARIANCE_SAMPLE(array) → number|null: the sample variance (null for fewer than 2 numbers)"),
    det("STDDEV_POPULATION", 1, 1, stddev_population, "STDDEV_POPULATION(array) → number|null: the population standard deviation"),
    det("STDDEV", 1, 1, stddev_population, "STDDEV(array) → number|null: alias of STDDEV_POPULATION()"),
    det("STDDEV_SAMPLE", 1, 1, stddev_sample, "STDDEV_SAMPLE(array) → number|null: the sample standard deviation (null for fewer than 2 numbers)"),
    det("COSINE_SIMILARITY", 2, 2, cosine_similarity, "COSINE_SIMILARITY(x, y) → number|array|null: cosine similarity of two number arrays (x may be an array of arrays)"),
    det("L1_DISTANCE", 2, 2, l1_distance, "L1_DISTANCE(x, y) → number|array|null: Manhattan distance of two number arrays (x may be an array of arrays)"),
    det("L2_DISTANCE", 2, 2, l2_distance, "L2_DISTANCE(x, y) → number|array|null: Euclidean distance of two number arrays (x may be an array of arrays)"),
];

fn num(args: &[Value], i: usize) -> f64 {
    value::to_number(arg(args, i))
}

fn abs(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).abs())
}

fn ceil(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).ceil())
}

fn floor(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).floor())
}

fn round(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num((num(&args, 0) + 0.5).floor())
}

fn sqrt(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).sqrt())
}

fn pow(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).powf(num(&args, 1)))
}

fn exp(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).exp())
}

fn exp2(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).exp2())
}

/// `f` of a positive argument; `null` for arguments ≤ 0.
fn positive(args: &[Value], f: fn(f64) -> f64) -> Result<Value, QueryError> {
    let x = num(args, 0);
    if x <= 0.0 {
        return ok_null();
    }
    ok_num(f(x))
}

fn log(args: Vec<Value>) -> Result<Value, QueryError> {
    positive(&args, f64::ln)
}

fn log2(args: Vec<Value>) -> Result<Value, QueryError> {
    positive(&args, f64::log2)
}

fn log10(args: Vec<Value>) -> Result<Value, QueryError> {
    positive(&args, f64::log10)
}

fn sin(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).sin())
}

fn cos(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).cos())
}

fn tan(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).tan())
}

fn asin(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).asin())
}

fn acos(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).acos())
}

fn atan(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).atan())
}

fn atan2(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).atan2(num(&args, 1)))
}

fn radians(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).to_radians())
}

fn degrees(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(num(&args, 0).to_degrees())
}

fn pi(_: Vec<Value>) -> Result<Value, QueryError> {
    ok_num(std::f64::consts::PI)
}

fn rand(_: Vec<Value>) -> Result<Value, QueryError> {
    loop {
        let r: f64 = ::rand::random();
        if r > 0.0 {
            return ok_num(r);
        }
    }
}

fn range(args: Vec<Value>) -> Result<Value, QueryError> {
    let step = match args.get(2) {
        None | Some(Value::Null) => {
            return value::range(&args[0], &args[1], value::DEFAULT_RANGE_LIMIT)
        }
        Some(v) => value::to_number(v),
    };
    let (from, to) = (num(&args, 0), num(&args, 1));
    if step == 0.0 || (from < to && step < 0.0) || (from > to && step > 0.0) {
        return ok_null();
    }
    let count = ((to - from) / step).floor() + 1.0;
    if count > value::DEFAULT_RANGE_LIMIT as f64 {
        return Err(QueryError::new(
            ErrorKind::Limit,
            format!(
                "RANGE({from}, {to}, {step}) would have {count} elements, more than the limit of {}: \
                 use a larger step or a smaller range",
                value::DEFAULT_RANGE_LIMIT
            ),
        ));
    }
    let mut out = Vec::with_capacity(count.max(0.0) as usize);
    let mut x = from;
    while (step > 0.0 && x <= to) || (step < 0.0 && x >= to) {
        out.push(value::number(x));
        x += step;
    }
    Ok(Value::Array(out))
}

/// The numbers of an array argument with nulls skipped; `None` if the argument
/// is not an array or holds something other than numbers and nulls.
fn numbers(args: &[Value]) -> Option<Vec<f64>> {
    let Value::Array(items) = arg(args, 0) else {
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Null => {}
            Value::Number(n) => out.push(value::as_f64(n)),
            _ => return None,
        }
    }
    Some(out)
}

fn sum(args: Vec<Value>) -> Result<Value, QueryError> {
    match numbers(&args) {
        Some(xs) => ok_num(xs.iter().sum()),
        None => ok_null(),
    }
}

fn product(args: Vec<Value>) -> Result<Value, QueryError> {
    match numbers(&args) {
        Some(xs) => ok_num(xs.iter().product()),
        None => ok_null(),
    }
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

fn average(args: Vec<Value>) -> Result<Value, QueryError> {
    match numbers(&args).as_deref().and_then(mean) {
        Some(m) => ok_num(m),
        None => ok_null(),
    }
}

/// The smallest (or, reversed, greatest) non-null element.
fn extreme(args: &[Value], want: Ordering) -> Result<Value, QueryError> {
    let Value::Array(items) = arg(args, 0) else {
        return ok_null();
    };
    let best = items
        .iter()
        .filter(|v| !v.is_null())
        .fold(None, |best, v| match best {
            Some(b) if value::compare(v, b) != want => Some(b),
            _ => Some(v),
        });
    Ok(best.cloned().unwrap_or(Value::Null))
}

fn min(args: Vec<Value>) -> Result<Value, QueryError> {
    extreme(&args, Ordering::Less)
}

fn max(args: Vec<Value>) -> Result<Value, QueryError> {
    extreme(&args, Ordering::Greater)
}

fn sorted_numbers(args: &[Value]) -> Option<Vec<f64>> {
    let mut xs = numbers(args)?;
    xs.sort_by(f64::total_cmp);
    Some(xs)
}

fn median(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(xs) = sorted_numbers(&args).filter(|xs| !xs.is_empty()) else {
        return ok_null();
    };
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        ok_num(xs[mid])
    } else {
        ok_num((xs[mid - 1] + xs[mid]) / 2.0)
    }
}

fn percentile(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(xs) = sorted_numbers(&args).filter(|xs| !xs.is_empty()) else {
        return ok_null();
    };
    let p = value::to_number(arg(&args, 1));
    if !(0.0..=100.0).contains(&p) {
        return ok_null();
    }
    let n = xs.len();
    let method = match args.get(2) {
        None | Some(Value::Null) => "rank".to_string(),
        Some(v) => value::to_string(v),
    };
    match method.as_str() {
        "rank" => {
            let idx = ((p / 100.0) * n as f64).ceil() as usize;
            ok_num(xs[idx.clamp(1, n) - 1])
        }
        "interpolation" => {
            // n values split 0..100 into n + 1 segments: the outer ones give the
            // extremes, the inner ones interpolate between neighbours.
            let pos = p * (n as f64 + 1.0) / 100.0;
            if pos < 1.0 {
                return ok_num(xs[0]);
            }
            if pos >= n as f64 {
                return ok_num(xs[n - 1]);
            }
            let i = pos.floor() as usize;
            let frac = pos - pos.floor();
            ok_num(xs[i - 1] + frac * (xs[i] - xs[i - 1]))
        }
        _ => ok_null(),
    }
}

/// Sum of squared deviations from the mean, and the count.
fn squared_deviations(args: &[Value]) -> Option<(f64, usize)> {
    let xs = numbers(args)?;
    let m = mean(&xs)?;
    Some((xs.iter().map(|x| (x - m) * (x - m)).sum(), xs.len()))
}

fn variance(args: &[Value], sample: bool) -> Option<f64> {
    let (ss, n) = squared_deviations(args)?;
    let d = if sample { n - 1 } else { n };
    (d > 0).then(|| ss / d as f64)
}

fn variance_population(args: Vec<Value>) -> Result<Value, QueryError> {
    variance(&args, false).map_or_else(ok_null, ok_num)
}

fn variance_sample(args: Vec<Value>) -> Result<Value, QueryError> {
    variance(&args, true).map_or_else(ok_null, ok_num)
}

fn stddev_population(args: Vec<Value>) -> Result<Value, QueryError> {
    variance(&args, false).map_or_else(ok_null, |v| ok_num(v.sqrt()))
}

fn stddev_sample(args: Vec<Value>) -> Result<Value, QueryError> {
    variance(&args, true).map_or_else(ok_null, |v| ok_num(v.sqrt()))
}

/// A flat array of numbers.
fn vector(v: &Value) -> Option<Vec<f64>> {
    let Value::Array(items) = v else { return None };
    items
        .iter()
        .map(|x| x.as_number().map(value::as_f64))
        .collect()
}

/// Applies `f` to `(x, y)`, or to every row of `x` when `x` is an array of
/// arrays; `null` when the inputs are not number arrays of equal length.
fn vector_function(args: &[Value], f: fn(&[f64], &[f64]) -> Option<f64>) -> Value {
    let Some(y) = vector(arg(args, 1)) else {
        return Value::Null;
    };
    let apply = |x: &[f64]| -> Option<f64> {
        if x.len() != y.len() || x.is_empty() {
            return None;
        }
        f(x, &y)
    };
    match arg(args, 0) {
        Value::Array(rows) if rows.first().is_some_and(Value::is_array) => {
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                match vector(row).as_deref().and_then(apply) {
                    Some(r) => out.push(value::number(r)),
                    None => return Value::Null,
                }
            }
            Value::Array(out)
        }
        x => vector(x)
            .as_deref()
            .and_then(apply)
            .map_or(Value::Null, value::number),
    }
}

fn cosine_similarity(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(vector_function(&args, |x, y| {
        let dot: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
        let nx: f64 = x.iter().map(|a| a * a).sum::<f64>().sqrt();
        let ny: f64 = y.iter().map(|b| b * b).sum::<f64>().sqrt();
        (nx > 0.0 && ny > 0.0).then(|| dot / (nx * ny))
    }))
}

fn l1_distance(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(vector_function(&args, |x, y| {
        Some(x.iter().zip(y).map(|(a, b)| (a - b).abs()).sum())
    }))
}

fn l2_distance(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(vector_function(&args, |x, y| {
        Some(
            x.iter()
                .zip(y)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt(),
        )
    }))
}
