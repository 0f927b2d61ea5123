//! Unit tests of the recorder, no camera needed: a synthetic camera feeds a
//! real recorder (files, SQLite index, keys) on a manual clock, and each test
//! reads back what was written: index rows, the files' frames, their keys.

use super::recorder_rig::{params, payloads, Camera, Rig, StoredFrame, CAMERA, FRAME, SECOND, T0, TS};
use crate::db::{ticks_to_ns, RecordingRow};
use crate::storage::recorder::Event;

/// Every frame of every recording, in order.
fn all_frames(rig: &Rig, recs: &[RecordingRow]) -> Vec<StoredFrame> {
    recs.iter().flat_map(|r| rig.frames_of(r)).collect()
}

fn datas(frames: &[StoredFrame]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f.data.clone()).collect()
}

/// Frames per recording.
fn counts(recs: &[RecordingRow]) -> Vec<i64> {
    recs.iter().map(|r| r.frames).collect()
}

fn reasons(recs: &[RecordingRow]) -> Vec<&str> {
    recs.iter().map(|r| r.end_reason.as_deref().unwrap_or("")).collect()
}

#[test]
fn rotates_at_the_first_key_frame_after_the_segment_length() {
    let rig = Rig::new(T0);
    let mut rec = rig.recorder(2);
    // Key frames every 1.2 s: the 2 s mark falls mid-GOP, so each recording
    // runs to the key frame at 2.4 s.
    let mut cam = Camera::new(30);
    rig.feed(&mut rec, &mut cam, 150);
    rec.close("stopped");
    let recs = rig.recordings();
    assert_eq!(counts(&recs), [60, 60, 30]);
    assert_eq!(
        reasons(&recs),
        ["segment length reached", "segment length reached", "stopped"]
    );
    assert!(recs.iter().all(|r| r.state == "complete" && r.camera == CAMERA));
    // Media time and wall time run on without a gap.
    assert_eq!(
        recs.iter().map(|r| (r.start_pts, r.end_pts)).collect::<Vec<_>>(),
        [(0, 60 * FRAME), (60 * FRAME, 120 * FRAME), (120 * FRAME, 150 * FRAME)]
    );
    assert_eq!(recs[0].start_wall_ns, T0);
    assert!(!recs[0].continues_previous);
    for w in recs.windows(2) {
        assert_eq!(w[1].start_wall_ns, w[0].end_wall_ns());
        assert!(w[1].continues_previous);
    }
    assert_eq!(recs[1].start_wall_ns, T0 + 2_400_000_000);
    // Each recording starts on a key frame; a chunk is a GOP or at most 1 s.
    for r in &recs {
        let chunks = rig.index().chunks(r.id).unwrap();
        assert!(chunks[0].key_frame);
        assert_eq!(
            chunks.iter().map(|c| c.frames).collect::<Vec<_>>(),
            if r.frames == 60 {
                vec![25, 5, 25, 5]
            } else {
                vec![25, 5]
            }
        );
        assert_eq!(rig.stream_info(r).start_pts, r.start_pts);
    }
    // Every frame kept, in order, with its media time.
    let frames = all_frames(&rig, &recs);
    assert_eq!(datas(&frames), payloads(0..150, 30));
    assert!(frames.iter().enumerate().all(|(n, f)| f.pts == n as i64 * FRAME));
    assert!(frames.iter().enumerate().all(|(n, f)| f.key == (n % 30 == 0)));
    assert_eq!(rec.stats.frames_written, 150);
    assert_eq!(rec.stats.recordings, 3);
    assert_eq!(rec.stats.frames_dropped_before_key, 0);
    assert_eq!(rec.stats.discontinuities, 0);
}

#[test]
fn a_chunk_is_cut_at_128_kib_whatever_the_gop() {
    let rig = Rig::new(T0);
    let mut rec = rig.recorder(60);
    let mut cam = Camera::new(50);
    // 50 KB frames (10 Mbit/s at 25 fps) in 2 s GOPs: a chunk holds three
    // frames (the third takes it past 128 KiB), never a whole second.
    cam.frame_bytes = Some(50_000);
    rig.feed(&mut rec, &mut cam, 100);
    rec.close("stopped");
    let recs = rig.recordings();
    let chunks = rig.index().chunks(recs[0].id).unwrap();
    assert!(
        chunks.iter().all(|c| c.frames <= 3),
        "{:?}",
        chunks.iter().map(|c| c.frames).collect::<Vec<_>>()
    );
    // Each GOP (50 frames) is 16 chunks of 3 and one of 2, the first a seek point.
    assert_eq!(chunks.len(), 34);
    assert_eq!(chunks.iter().filter(|c| c.key_frame).count(), 2);
    assert!(chunks.iter().all(|c| c.len < 3 * 50_000 + 1_000));
    let sent: Vec<Vec<u8>> = payloads(0..100, 50)
        .into_iter()
        .map(|mut d| {
            d.resize(50_000, 0xA5);
            d
        })
        .collect();
    assert_eq!(datas(&all_frames(&rig, &recs)), sent);
}

#[test]
fn frames_before_the_first_key_frame_are_dropped_and_counted() {
    let rig = Rig::new(T0);
    let mut rec = rig.recorder(60);
    let mut cam = Camera::new(25);
    cam.n = 20; // starts mid-GOP: frames 20..24 are not key frames
    rig.feed(&mut rec, &mut cam, 30);
    rec.close("stopped");
    let recs = rig.recordings();
    assert_eq!(counts(&recs), [25]);
    assert_eq!(datas(&all_frames(&rig, &recs)), payloads(25..50, 25));
    assert_eq!(rec.stats.frames_dropped_before_key, 5);
}

#[test]
fn media_time_jumps_start_a_new_recording_without_losing_a_frame() {
    let rig = Rig::new(T0);
    let mut rec = rig.recorder(60);
    let mut cam = Camera::new(25);
    rig.feed(&mut rec, &mut cam, 40);
    cam.pts += 10 * i64::from(TS); // the camera's clock leaps 10 s forward mid-GOP
    rig.feed(&mut rec, &mut cam, 40);
    cam.pts -= 20 * i64::from(TS); // and 20 s back
    rig.feed(&mut rec, &mut cam, 40);
    rec.close("stopped");
    let recs = rig.recordings();
    // A new recording at the key frame after each jump (frames 50 and 100).
    assert_eq!(counts(&recs), [50, 50, 20]);
    assert_eq!(
        reasons(&recs),
        ["timestamp discontinuity", "timestamp discontinuity", "stopped"]
    );
    assert_eq!(rec.stats.discontinuities, 2);
    // The camera's clock is re-based: media time runs on one frame at a
    // time across both jumps, and every frame is kept.
    let frames = all_frames(&rig, &recs);
    assert_eq!(datas(&frames), payloads(0..120, 25));
    assert!(frames.iter().enumerate().all(|(n, f)| f.pts == n as i64 * FRAME));
    // The recordings follow one another in wall time, continuously.
    assert_eq!(recs[0].start_wall_ns, T0);
    assert_eq!(recs[1].start_wall_ns, T0 + 2 * SECOND);
    assert_eq!(recs[2].start_wall_ns, T0 + 4 * SECOND);
    assert!(recs[1].continues_previous && recs[2].continues_previous);
}

#[test]
fn wall_clock_steps_move_labels_forward_and_never_reorder_recordings() {
    let hour = 3600 * SECOND;
    let day = 24 * hour;
    let rig = Rig::new(T0);
    // One-second recordings (one GOP each).
    let mut rec = rig.recorder(1);
    let mut cam = Camera::new(25);
    rig.feed(&mut rec, &mut cam, 30);
    // NTP steps the clock an hour forward at 1.2 s.
    rig.clock.set_wall_ns(rig.now() + hour);
    rig.feed(&mut rec, &mut cam, 30);
    // Then a day back at 2.4 s.
    rig.clock.set_wall_ns(rig.now() - day - hour);
    rig.feed(&mut rec, &mut cam, 20);
    rec.close("stopped");
    let recs = rig.recordings();
    assert_eq!(counts(&recs), [25, 25, 25, 5]);
    // The recording open at the forward step keeps its media-derived labels;
    // the next one starts at the new time, marked as continuing the previous
    // one (one boundary moves by the step).
    assert_eq!(recs[1].start_wall_ns, T0 + SECOND);
    assert_eq!(recs[1].end_wall_ns(), T0 + 2 * SECOND);
    assert_eq!(recs[2].start_wall_ns, T0 + 2 * SECOND + hour);
    assert_eq!(rig.observed_wall_ns(recs[2].id), T0 + 2 * SECOND + hour);
    assert!(recs[2].continues_previous);
    // After the step back the labels keep following media time: the next
    // recording starts where the previous one ended, the raw reading is kept.
    assert_eq!(recs[3].start_wall_ns, recs[2].end_wall_ns());
    assert_eq!(recs[3].start_wall_ns, T0 + 3 * SECOND + hour);
    assert_eq!(rig.observed_wall_ns(recs[3].id), T0 + 3 * SECOND - day);
    assert!(recs[3].continues_previous);
    assert_eq!(datas(&all_frames(&rig, &recs)), payloads(0..80, 25));

    // A new camera session while the clock is still behind starts at the
    // last recording's end, not continuing it.
    rec.handle(Event::Disconnected);
    let mut cam = Camera::new(25);
    rig.feed(&mut rec, &mut cam, 10);
    rec.close("stopped");
    // So does a restarted recorder (it reads the last end from the index).
    drop(rec);
    let mut rec = rig.recorder(1);
    let mut cam2 = Camera::new(25);
    rig.feed(&mut rec, &mut cam2, 10);
    rec.close("stopped");
    let recs = rig.recordings();
    assert_eq!(counts(&recs), [25, 25, 25, 5, 10, 10]);
    assert_eq!(recs[4].start_wall_ns, recs[3].end_wall_ns());
    assert_eq!(recs[5].start_wall_ns, recs[4].end_wall_ns());
    assert!(!recs[4].continues_previous && !recs[5].continues_previous);
    assert!(rig.observed_wall_ns(recs[5].id) < T0 - day + 4 * SECOND);
    // Wall-clock order is recording order, whatever the clock did.
    assert!(recs
        .windows(2)
        .all(|w| w[0].end_wall_ns() <= w[1].start_wall_ns && w[0].id < w[1].id));
}

#[test]
fn a_small_wall_clock_step_is_absorbed_by_media_time() {
    let rig = Rig::new(T0);
    let mut rec = rig.recorder(1);
    let mut cam = Camera::new(25);
    rig.feed(&mut rec, &mut cam, 30);
    // Within 5 s either way: labels follow media time, no boundary moves.
    rig.clock.set_wall_ns(rig.now() + 4 * SECOND);
    rig.feed(&mut rec, &mut cam, 25);
    rig.clock.set_wall_ns(rig.now() - 4 * SECOND);
    rig.feed(&mut rec, &mut cam, 25);
    rec.close("stopped");
    let recs = rig.recordings();
    assert_eq!(counts(&recs), [25, 25, 25, 5]);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.start_wall_ns, T0 + i as i64 * SECOND);
    }
    assert_eq!(rig.observed_wall_ns(recs[1].id), T0 + SECOND);
    assert_eq!(rig.observed_wall_ns(recs[2].id), T0 + 6 * SECOND);
    assert_eq!(rig.observed_wall_ns(recs[3].id), T0 + 3 * SECOND);
}

#[test]
fn a_recording_after_utc_midnight_takes_the_next_days_key() {
    // 2023-11-14 00:00:00 UTC.
    let midnight = 19_675 * 86_400 * SECOND;
    let rig = Rig::with_keyring(midnight - 1_500_000_000);
    let mut rec = rig.recorder(1);
    let mut cam = Camera::new(25);
    rig.feed(&mut rec, &mut cam, 80);
    rec.close("stopped");
    let recs = rig.recordings();
    assert_eq!(counts(&recs), [25, 25, 25, 5]);
    let starts: Vec<i64> = recs.iter().map(|r| r.start_wall_ns - midnight).collect();
    assert_eq!(starts, [-1_500_000_000, -500_000_000, 500_000_000, 1_500_000_000]);
    let header_keys: Vec<[u8; 8]> = recs.iter().map(|r| rig.reader(r).header().key_id.0).collect();
    for (r, k) in recs.iter().zip(&header_keys) {
        assert_eq!(r.key_id, k.to_vec(), "the index names the file's key");
    }
    // The key is chosen by the recording's start: the one that starts before
    // midnight (and runs past it) uses the first day's key.
    assert_eq!(header_keys[0], header_keys[1]);
    assert_eq!(header_keys[2], header_keys[3]);
    assert_ne!(header_keys[1], header_keys[2]);
    // Every frame reads back with the keyring.
    assert_eq!(datas(&all_frames(&rig, &recs)), payloads(0..80, 25));
}

#[test]
fn new_stream_parameters_start_a_new_recording() {
    let rig = Rig::new(T0);
    let mut rec = rig.recorder(60);
    let mut cam = Camera::new(25);
    rig.feed(&mut rec, &mut cam, 25);
    // The same parameters sent again change nothing.
    cam.set_params(params(64));
    rig.feed(&mut rec, &mut cam, 25);
    // New ones on the key frame at 2 s: a new recording from that frame.
    cam.set_params(params(128));
    rig.feed(&mut rec, &mut cam, 20);
    rec.close("stopped");
    let recs = rig.recordings();
    assert_eq!(counts(&recs), [50, 20]);
    assert_eq!(reasons(&recs), ["parameters changed", "stopped"]);
    assert_eq!(rig.stream_info(&recs[0]).width, 64);
    let si = rig.stream_info(&recs[1]);
    assert_eq!(
        (si.width, si.sample_entry.clone()),
        (128, params(128).sample_entry.clone())
    );
    assert_eq!(recs[1].start_wall_ns, recs[0].end_wall_ns());
    assert!(recs[1].continues_previous);
    let frames = all_frames(&rig, &recs);
    assert_eq!(datas(&frames), payloads(0..70, 25));
    assert!(frames.iter().enumerate().all(|(n, f)| f.pts == n as i64 * FRAME));
    assert_eq!(ticks_to_ns(recs[1].start_pts, i64::from(TS)), 2 * SECOND);
}

#[test]
fn camera_states_are_stamped_with_the_clock() {
    let rig = Rig::new(T0);
    let mut rec = rig.recorder(60);
    rig.clock.advance_ms(1500);
    rec.handle(Event::State {
        state: "streaming",
        error: None,
    });
    let cams = rig.index().cameras().unwrap();
    let cam = cams.iter().find(|c| c.name == CAMERA).unwrap();
    assert_eq!(cam.state, "streaming");
    assert_eq!(cam.state_since_ns, T0 + 1_500_000_000);
}

/// 40 ms of 8 kHz G.711 at camera video time `video_pts`.
fn g711(n: i64, video_pts: i64) -> vigil_format::media::AudioFrame {
    vigil_format::media::AudioFrame {
        pts: 1_000 + n * 320,
        video_pts,
        duration: 320,
        data: vec![n as u8; 320],
    }
}

#[test]
fn audio_goes_after_each_chunk_and_rotation_keeps_it_continuous() {
    audio_after_each_chunk(None);
}

#[test]
fn audio_stays_continuous_when_chunks_are_cut_mid_gop() {
    // 60 KB frames: chunks of three frames (cut at 128 KiB), most without a
    // key frame, each followed by the audio that plays before its end.
    audio_after_each_chunk(Some(60_000));
}

/// Records 6 s of video and G.711 audio in 2 s recordings (frames of
/// `frame_bytes` bytes when given) and checks that every audio sample is
/// stored once, after its chunk, continuous across chunks and recordings.
fn audio_after_each_chunk(frame_bytes: Option<usize>) {
    use vigil_format::vseg::{AudioChunk, AudioCodec, AudioTrack};
    let rig = Rig::new(T0);
    let mut rec = rig.recorder(2);
    let track = AudioTrack {
        codec: AudioCodec::Pcmu,
        sample_rate: 8000,
        channels: 1,
        config: vec![],
    };
    rec.handle(Event::AudioParams(std::sync::Arc::new(track.clone())));
    let mut cam = Camera::new(25);
    cam.frame_bytes = frame_bytes;
    // Audio comes a frame ahead of the video it plays against (and one
    // packet before the first key frame, which the first recording drops).
    rec.handle(Event::Audio(vec![g711(0, -FRAME)]));
    for i in 0..150 {
        rec.handle(Event::Audio(vec![g711(i + 1, i * FRAME)]));
        rec.handle(Event::Frames(vec![cam.next()]));
    }
    rec.close("test");
    let recs = rig.recordings();
    assert_eq!(recs.len(), 3, "6 s in 2 s recordings");
    let mut samples = 0;
    let mut next_video = 0;
    for r in &recs {
        assert_eq!(rig.stream_info(r).audio, Some(track.clone()));
        let mut reader = rig.reader(r);
        let scan = reader.scan().unwrap();
        assert!(scan.error.is_none(), "{:?}", scan.error);
        assert_eq!(
            scan.audio_records,
            scan.chunks.len() as u64,
            "one audio record per chunk"
        );
        if frame_bytes.is_some() {
            assert!(scan.chunks.len() > 2 * 2, "chunks cut mid-GOP: {}", scan.chunks.len());
        }
        let mut buf = Vec::new();
        for c in &scan.chunks {
            assert!(reader.read_audio_after(&c.pos, &mut buf).unwrap());
            let a = AudioChunk::decode(&buf).unwrap();
            assert_eq!(
                a.first_video_pts, next_video,
                "audio continues across chunks and recordings"
            );
            next_video = a.first_video_pts + a.samples.len() as i64 * FRAME;
            samples += a.samples.len();
        }
    }
    assert_eq!(samples, 150);
}
