//! Tests of the MQTT channel.
