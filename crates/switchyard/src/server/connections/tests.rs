use super::*;

#[test]
fn a_throttle_lets_one_event_per_period_through_and_counts_the_rest() {
    let start = Instant::now();
    let at = |ms| start + Duration::from_millis(ms);
    let mut throttle = Throttle::new(Duration::from_secs(1));
    assert_eq!(throttle.hit(at(0)), Some(0));
    assert_eq!(throttle.hit(at(1)), None);
    assert_eq!(throttle.hit(at(500)), None);
    assert_eq!(throttle.hit(at(999)), None);
    assert_eq!(throttle.hit(at(1000)), Some(3));
    assert_eq!(throttle.hit(at(1500)), None);
    assert_eq!(throttle.hit(at(5000)), Some(1));
    assert_eq!(throttle.hit(at(6000)), Some(0));
}
