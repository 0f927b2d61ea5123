//! The ONVIF client's parsing against canned answers as real cameras send
//! them (prefixes differ from camera to camera; names and namespaces not).

use super::*;

const PROFILES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
  xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:trt="http://www.onvif.org/ver10/media/wsdl">
<SOAP-ENV:Body><trt:GetProfilesResponse>
 <trt:Profiles fixed="true" token="Profile_1">
  <tt:Name>mainStream</tt:Name>
  <tt:VideoSourceConfiguration token="VideoSourceToken"><tt:Name>VideoSourceConfig</tt:Name>
   <tt:Bounds x="0" y="0" width="2560" height="1440"/></tt:VideoSourceConfiguration>
  <tt:VideoEncoderConfiguration token="VideoEncoderToken_1">
   <tt:Name>VideoEncoder_1</tt:Name><tt:Encoding>H264</tt:Encoding>
   <tt:Resolution><tt:Width>2560</tt:Width><tt:Height>1440</tt:Height></tt:Resolution>
   <tt:Quality>5</tt:Quality>
   <tt:RateControl><tt:FrameRateLimit>25</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>
    <tt:BitrateLimit>4096</tt:BitrateLimit></tt:RateControl>
  </tt:VideoEncoderConfiguration>
  <tt:PTZConfiguration token="PTZToken"><tt:Name>PTZ</tt:Name></tt:PTZConfiguration>
 </trt:Profiles>
 <trt:Profiles fixed="true" token="Profile_2">
  <tt:Name>subStream</tt:Name>
  <tt:VideoEncoderConfiguration token="VideoEncoderToken_2">
   <tt:Name>VideoEncoder_2</tt:Name><tt:Encoding>H264</tt:Encoding>
   <tt:Resolution><tt:Width>640</tt:Width><tt:Height>360</tt:Height></tt:Resolution>
   <tt:RateControl><tt:FrameRateLimit>10</tt:FrameRateLimit></tt:RateControl>
  </tt:VideoEncoderConfiguration>
 </trt:Profiles>
 <trt:Profiles fixed="true" token="Profile_3">
  <tt:Name>jpeg</tt:Name>
  <tt:VideoEncoderConfiguration token="VideoEncoderToken_3">
   <tt:Encoding>JPEG</tt:Encoding>
   <tt:Resolution><tt:Width>352</tt:Width><tt:Height>288</tt:Height></tt:Resolution>
  </tt:VideoEncoderConfiguration>
 </trt:Profiles>
 <trt:Profiles token="audio_only"><tt:Name>audio</tt:Name></trt:Profiles>
</trt:GetProfilesResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;

const STREAM_URI: &str = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>
<GetStreamUriResponse xmlns="http://www.onvif.org/ver10/media/wsdl"><MediaUri>
 <Uri xmlns="http://www.onvif.org/ver10/schema">rtsp://192.0.2.7:554/Streaming/Channels/101?transportmode=unicast&amp;profile=Profile_1</Uri>
 <InvalidAfterConnect xmlns="http://www.onvif.org/ver10/schema">false</InvalidAfterConnect>
</MediaUri></GetStreamUriResponse></s:Body></s:Envelope>"#;

const DATE_TIME: &str = r#"<?xml version="1.0"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"
 xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema"><env:Body>
<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>
 <tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>
 <tt:TimeZone><tt:TZ>CST-8</tt:TZ></tt:TimeZone>
 <tt:UTCDateTime><tt:Time><tt:Hour>7</tt:Hour><tt:Minute>50</tt:Minute><tt:Second>45</tt:Second></tt:Time>
  <tt:Date><tt:Year>2010</tt:Year><tt:Month>9</tt:Month><tt:Day>16</tt:Day></tt:Date></tt:UTCDateTime>
 <tt:LocalDateTime><tt:Time><tt:Hour>15</tt:Hour><tt:Minute>50</tt:Minute><tt:Second>45</tt:Second></tt:Time>
  <tt:Date><tt:Year>2010</tt:Year><tt:Month>9</tt:Month><tt:Day>16</tt:Day></tt:Date></tt:LocalDateTime>
</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse></env:Body></env:Envelope>"#;

const SERVICES: &str = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:d="http://www.onvif.org/ver10/device/wsdl"><s:Body>
<d:GetServicesResponse>
 <d:Service><d:Namespace>http://www.onvif.org/ver10/device/wsdl</d:Namespace><d:XAddr>http://127.0.0.1:18080/onvif/device_service</d:XAddr>
  <d:Version><tt:Major xmlns:tt="http://www.onvif.org/ver10/schema">2</tt:Major></d:Version></d:Service>
 <d:Service><d:Namespace>http://www.onvif.org/ver10/media/wsdl</d:Namespace><d:XAddr>http://127.0.0.1:18080/onvif/media_service</d:XAddr></d:Service>
 <d:Service><d:Namespace>http://www.onvif.org/ver20/ptz/wsdl</d:Namespace><d:XAddr>http://127.0.0.1:18080/onvif/ptz_service</d:XAddr></d:Service>
 <d:Service><d:Namespace>http://www.onvif.org/ver10/events/wsdl</d:Namespace><d:XAddr>http://127.0.0.1:18080/onvif/events_service</d:XAddr></d:Service>
</d:GetServicesResponse></s:Body></s:Envelope>"#;

const CAPABILITIES: &str = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl"
 xmlns:tt="http://www.onvif.org/ver10/schema"><s:Body><tds:GetCapabilitiesResponse><tds:Capabilities>
 <tt:Device><tt:XAddr>http://192.0.2.7/onvif/device_service</tt:XAddr></tt:Device>
 <tt:Events><tt:XAddr>http://192.0.2.7/onvif/Events</tt:XAddr></tt:Events>
 <tt:Media><tt:XAddr>http://192.0.2.7/onvif/Media</tt:XAddr></tt:Media>
</tds:Capabilities></tds:GetCapabilitiesResponse></s:Body></s:Envelope>"#;

const PULLED: &str = r#"<?xml version="1.0"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:tev="http://www.onvif.org/ver10/events/wsdl"
 xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tt="http://www.onvif.org/ver10/schema"
 xmlns:tns1="http://www.onvif.org/ver10/topics"><env:Body><tev:PullMessagesResponse>
 <tev:CurrentTime>2026-01-02T03:04:05Z</tev:CurrentTime><tev:TerminationTime>2026-01-02T03:05:05Z</tev:TerminationTime>
 <wsnt:NotificationMessage>
  <wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">tns1:RuleEngine/CellMotionDetector/Motion</wsnt:Topic>
  <wsnt:Message><tt:Message UtcTime="2026-01-02T03:04:00.500Z" PropertyOperation="Changed">
   <tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value="vsc"/></tt:Source>
   <tt:Data><tt:SimpleItem Name="IsMotion" Value="true"/></tt:Data></tt:Message></wsnt:Message>
 </wsnt:NotificationMessage>
 <wsnt:NotificationMessage>
  <wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">tns1:VideoSource/GlobalSceneChange/ImagingService</wsnt:Topic>
  <wsnt:Message><tt:Message UtcTime="2026-01-02T03:04:01Z">
   <tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value="vsc"/></tt:Source>
   <tt:Data><tt:SimpleItem Name="State" Value="false"/></tt:Data></tt:Message></wsnt:Message>
 </wsnt:NotificationMessage>
 <wsnt:NotificationMessage>
  <wsnt:Topic>tns1:Device/Trigger/DigitalInput</wsnt:Topic>
  <wsnt:Message><tt:Message UtcTime="2026-01-02T03:04:02Z"><tt:Data><tt:SimpleItem Name="LogicalState" Value="true"/></tt:Data></tt:Message></wsnt:Message>
 </wsnt:NotificationMessage>
</tev:PullMessagesResponse></env:Body></env:Envelope>"#;

const PROBE_MATCH: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
 xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsdd="http://schemas.xmlsoap.org/ws/2005/04/discovery"
 xmlns:dn="http://www.onvif.org/ver10/network/wsdl" xmlns:tds="http://www.onvif.org/ver10/device/wsdl">
<SOAP-ENV:Header>
 <wsa:MessageID>urn:uuid:1b2c0f3e-0000-4000-8000-000000000001</wsa:MessageID>
 <wsa:RelatesTo>urn:uuid:probe-1</wsa:RelatesTo>
 <wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>
 <wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>
</SOAP-ENV:Header>
<SOAP-ENV:Body><wsdd:ProbeMatches><wsdd:ProbeMatch>
 <wsa:EndpointReference><wsa:Address>urn:uuid:5f5a69c2-e0ae-504f-829b-00000000000a</wsa:Address></wsa:EndpointReference>
 <wsdd:Types>dn:NetworkVideoTransmitter tds:Device</wsdd:Types>
 <wsdd:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/hardware/SimCam%201 onvif://www.onvif.org/name/front%20door onvif://www.onvif.org/Profile/Streaming</wsdd:Scopes>
 <wsdd:XAddrs>http://127.0.0.1:18080/onvif/device_service http://[fe80::1]/onvif/device_service</wsdd:XAddrs>
 <wsdd:MetadataVersion>1</wsdd:MetadataVersion>
</wsdd:ProbeMatch></wsdd:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;

#[test]
fn profiles_are_read_with_their_codec_size_and_rate() {
    let p = media::parse_profiles(PROFILES).unwrap();
    assert_eq!(p.len(), 4);
    assert_eq!(
        (p[0].token.as_str(), p[0].name.as_str(), p[0].codec.as_str()),
        ("Profile_1", "mainStream", "H264")
    );
    assert_eq!((p[0].width, p[0].height, p[0].fps), (2560, 1440, Some(25.0)));
    assert_eq!((p[1].width, p[1].height, p[1].fps), (640, 360, Some(10.0)));
    assert_eq!(p[2].codec, "JPEG");
    assert_eq!((p[3].codec.as_str(), p[3].width), ("", 0));
    let uri = media::parse_stream_uri(STREAM_URI).unwrap().unwrap();
    assert_eq!(
        uri.as_str(),
        "rtsp://192.0.2.7:554/Streaming/Channels/101?transportmode=unicast&profile=Profile_1"
    );
}

#[test]
fn main_is_the_largest_h264_or_h265_profile_and_sub_the_smallest_other() {
    let mut p = media::parse_profiles(PROFILES).unwrap();
    assert!(
        matches!(choose_streams(&p), Err(OnvifError::NoVideoProfile)),
        "no stream address yet"
    );
    for (i, prof) in p.iter_mut().enumerate() {
        prof.stream_uri = Some(Url::parse(&format!("rtsp://192.0.2.7/{i}")).unwrap());
    }
    let (main, sub) = choose_streams(&p).unwrap();
    assert_eq!(main.token, "Profile_1");
    assert_eq!(sub.unwrap().token, "Profile_2", "JPEG is not a stream Vigil records");
    assert_eq!(main.describe(), "H264 2560x1440 25 fps");
    let (main, sub) = choose_streams(&p[..1]).unwrap();
    assert_eq!((main.token.as_str(), sub), ("Profile_1", None));
}

#[test]
fn the_clock_and_services_are_read() {
    let (ms, ntp) = parse_clock(DATE_TIME).unwrap();
    assert_eq!(ms, 1_284_623_445_000);
    assert!(ntp);
    assert!(parse_clock(&DATE_TIME.replace("<tt:Month>9</tt:Month>", "<tt:Month>13</tt:Month>")).is_err());
    let s = parse_services(SERVICES).unwrap();
    assert_eq!(s.media.unwrap().path(), "/onvif/media_service");
    assert_eq!(s.ptz.unwrap().path(), "/onvif/ptz_service");
    assert_eq!(s.events.unwrap().path(), "/onvif/events_service");
    let c = parse_capabilities(CAPABILITIES).unwrap();
    assert_eq!(c.media.unwrap().as_str(), "http://192.0.2.7/onvif/Media");
    assert!(c.ptz.is_none());
}

#[test]
fn motion_and_tamper_messages_are_pulled_and_others_left_out() {
    let e = events::parse_messages(PULLED).unwrap();
    assert_eq!(
        e,
        [
            CameraEvent {
                utc_ms: 1_767_323_040_500,
                kind: "motion",
                state: true,
                topic: "tns1:RuleEngine/CellMotionDetector/Motion".into()
            },
            CameraEvent {
                utc_ms: 1_767_323_041_000,
                kind: "tamper",
                state: false,
                topic: "tns1:VideoSource/GlobalSceneChange/ImagingService".into()
            },
        ]
    );
}

#[test]
fn probe_matches_give_the_device_address_and_scopes() {
    let found = discovery::parse_probe_matches(PROBE_MATCH, "urn:uuid:probe-1");
    assert_eq!(found.len(), 1);
    let d = &found[0];
    assert_eq!(d.xaddr.as_str(), "http://127.0.0.1:18080/onvif/device_service");
    assert_eq!(d.urn, "urn:uuid:5f5a69c2-e0ae-504f-829b-00000000000a");
    assert_eq!((d.name.as_str(), d.hardware.as_str()), ("front door", "SimCam 1"));
    assert_eq!(d.scopes.len(), 4);
    assert!(
        discovery::parse_probe_matches(PROBE_MATCH, "urn:uuid:other").is_empty(),
        "an answer to another probe"
    );
    assert!(discovery::parse_probe_matches("<not xml", "x").is_empty());
    let probe = discovery::probe_message("urn:uuid:probe-1");
    let doc = roxmltree::Document::parse(&probe).unwrap();
    assert!(soap::descendant(doc.root(), "http://schemas.xmlsoap.org/ws/2005/04/discovery", "Probe").is_some());
}

#[test]
fn presets_are_listed() {
    let xml = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>
<tptz:GetPresetsResponse xmlns:tptz="http://www.onvif.org/ver20/ptz/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema">
 <tptz:Preset token="preset-1"><tt:Name>door</tt:Name></tptz:Preset>
 <tptz:Preset token="2"><tt:Name>gate &amp; yard</tt:Name></tptz:Preset>
</tptz:GetPresetsResponse></s:Body></s:Envelope>"#;
    assert_eq!(
        ptz::parse_presets(xml).unwrap(),
        [
            ("preset-1".to_string(), "door".to_string()),
            ("2".to_string(), "gate & yard".to_string())
        ]
    );
}

#[test]
fn errors_read_as_sentences_and_never_hold_a_password() {
    assert_eq!(
        OnvifError::NotAuthorized.to_string(),
        "the camera refused the username or password (ONVIF NotAuthorized)"
    );
    let d = Device::new(
        Url::parse("http://127.0.0.1:1/onvif/device_service").unwrap(),
        Some("admin".into()),
        Some(Zeroizing::new("hunter22".into())),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt.block_on(d.information()).unwrap_err();
    assert!(matches!(e, OnvifError::Unreachable(_)), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("hunter22"));
}
