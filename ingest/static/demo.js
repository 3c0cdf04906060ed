/* The seed's editing flow on the real API: every step emits its funnel event. */
(function () {
  "use strict";
  var EXPERIMENT = "segmentation_tool";
  var writeKey = document.querySelector('meta[name="fs-write-key"]').content;
  var fs = window.funnelstream.init(writeKey, window.location.origin, { batchSize: 5, flushIntervalMs: 500 });
  var $ = function (id) { return document.getElementById(id); };
  var image = $("image"), mask = $("mask");
  var ctx = image.getContext("2d"), maskCtx = mask.getContext("2d");
  var state = { inputId: null, inputKey: null, inputToken: null, tool: null, jobId: null, resultUrl: null, proposals: [], drawScale: 1 };

  function log(line) { $("log").textContent = line + "\n" + $("log").textContent; }

  function api(method, path, body) {
    return fetch(path, {
      method: method,
      headers: { "Content-Type": "application/json", "X-Write-Key": writeKey },
      body: body ? JSON.stringify(body) : undefined
    }).then(function (res) {
      if (!res.ok) return res.text().then(function (t) { throw new Error(method + " " + path + " → " + res.status + " " + t); });
      return res.json();
    });
  }

  function track(type, props) {
    var id = fs.track(type, props);
    log(type + " " + id.slice(0, 8));
    return id;
  }

  function unlock(step) { $("step-" + step).classList.remove("locked"); }
  function done(step) { $("step-" + step).classList.add("done"); }

  function upload(blob, contentType) {
    // The ticket's token binds the upload to this device: jobs on it send it with the same anonymous_id.
    return api("POST", "/v1/uploads", { content_type: contentType, anonymous_id: fs.anonymousId() }).then(function (ticket) {
      if (blob.size > ticket.max_bytes) throw new Error("image too large: " + blob.size + " bytes, at most " + ticket.max_bytes);
      // A signed POST policy: its fields first, the file last.
      var form = new FormData();
      Object.keys(ticket.fields).forEach(function (name) { form.append(name, ticket.fields[name]); });
      form.append("file", blob);
      return fetch(ticket.upload_url, { method: "POST", body: form }).then(function (res) {
        if (!res.ok) throw new Error("upload failed: " + res.status);
        return ticket;
      });
    });
  }

  function useImage(blob, contentType) {
    var url = URL.createObjectURL(blob);
    var img = new Image();
    img.onload = function () {
      var scale = Math.min(image.width / img.width, image.height / img.height, 1);
      ctx.clearRect(0, 0, image.width, image.height);
      ctx.drawImage(img, 0, 0, img.width * scale, img.height * scale);
      state.drawScale = scale;
      upload(blob, contentType).then(function (ticket) {
        state.inputId = ticket.input_id;
        state.inputKey = ticket.input_key;
        state.inputToken = ticket.upload_token;
        track("image_uploaded", {
          input_id: ticket.input_id, input_url: ticket.input_key, width: img.width, height: img.height,
          size_bytes: blob.size, content_type: contentType
        });
        done("upload");
        unlock("tool");
      }).catch(function (e) { log(String(e)); });
    };
    img.src = url;
  }

  function sampleImage() {
    var c = document.createElement("canvas");
    c.width = 512; c.height = 384;
    var g = c.getContext("2d");
    var sky = g.createLinearGradient(0, 0, 0, 384);
    sky.addColorStop(0, "#8ec5ff"); sky.addColorStop(1, "#e9f4ff");
    g.fillStyle = sky; g.fillRect(0, 0, 512, 384);
    g.fillStyle = "#4c8c4a"; g.fillRect(0, 280, 512, 104);
    g.fillStyle = "#d94a3d"; g.beginPath(); g.arc(330, 230, 60, 0, 2 * Math.PI); g.fill();
    g.fillStyle = "#333"; g.fillRect(120, 180, 40, 110);
    return new Promise(function (resolve) { c.toBlob(resolve, "image/png"); });
  }

  // Masks: rectangle drag, brush strokes, or clicks on segmentation proposals.
  var dragging = null;
  mask.addEventListener("mousedown", function (e) {
    if (!state.tool) return;
    var p = [e.offsetX, e.offsetY];
    if (state.tool === "segmentation") return pickProposal(p);
    dragging = p;
    if (state.tool === "brush") paint(p);
  });
  mask.addEventListener("mousemove", function (e) {
    if (dragging && state.tool === "brush") paint([e.offsetX, e.offsetY]);
  });
  mask.addEventListener("mouseup", function (e) {
    if (dragging && state.tool === "rectangle") {
      maskCtx.fillStyle = "rgba(255,0,0,0.45)";
      maskCtx.fillRect(dragging[0], dragging[1], e.offsetX - dragging[0], e.offsetY - dragging[1]);
    }
    if (dragging) unlock("inference");
    dragging = null;
  });
  function paint(p) {
    maskCtx.fillStyle = "rgba(255,0,0,0.45)";
    maskCtx.beginPath(); maskCtx.arc(p[0], p[1], 12, 0, 2 * Math.PI); maskCtx.fill();
  }
  function pickProposal(p) {
    state.proposals.forEach(function (box) {
      if (p[0] >= box[0] && p[0] <= box[2] && p[1] >= box[1] && p[1] <= box[3]) {
        maskCtx.fillStyle = "rgba(255,0,0,0.45)";
        maskCtx.fillRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
        unlock("inference");
      }
    });
  }

  function waitForJob(jobId) {
    return api("GET", "/v1/jobs/" + jobId).then(function (job) {
      $("job-status").textContent = "job " + jobId.slice(0, 8) + ": " + job.status;
      if (job.status === "queued") return new Promise(function (r) { setTimeout(r, 500); }).then(function () { return waitForJob(jobId); });
      if (job.status !== "succeeded") throw new Error("job failed: " + job.error);
      return job;
    });
  }

  function selectTool(button) {
    document.querySelectorAll("[data-tool]").forEach(function (b) { b.classList.remove("active"); });
    button.classList.add("active");
    state.tool = button.dataset.tool;
    track("tool_selected", { input_id: state.inputId, tool_id: Number(button.dataset.toolId) });
    done("tool");
    if (state.tool !== "segmentation") return;
    $("proposals-note").textContent = "finding regions…";
    api("POST", "/v1/jobs", {
      kind: "segment", input_id: state.inputId, input_key: state.inputKey, input_token: state.inputToken,
      anonymous_id: fs.anonymousId()
    }).then(function (accepted) { return waitForJob(accepted.job_id); })
      .then(function (job) { return job.proposals_url ? fetch(job.proposals_url).then(function (r) { return r.json(); }) : { proposals: [] }; })
      .then(function (doc) {
        // Proposal boxes are x, y, width, height in the image's pixels; the canvas shows it scaled.
        var k = state.drawScale || 1;
        state.proposals = (doc.proposals || []).map(function (p) {
          var b = p.box; return [b[0] * k, b[1] * k, (b[0] + b[2]) * k, (b[1] + b[3]) * k];
        });
        maskCtx.strokeStyle = "#2557d6";
        state.proposals.forEach(function (b) { maskCtx.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]); });
        $("proposals-note").textContent = state.proposals.length + " regions proposed: click the ones to erase";
      }).catch(function (e) { $("proposals-note").textContent = String(e); });
  }

  function maskBlob() {
    // The model wants a binary mask at the image's size: white where the user marked.
    var c = document.createElement("canvas");
    c.width = mask.width; c.height = mask.height;
    var g = c.getContext("2d");
    var data = maskCtx.getImageData(0, 0, mask.width, mask.height);
    var out = g.createImageData(mask.width, mask.height);
    for (var i = 0; i < data.data.length; i += 4) {
      var on = data.data[i + 3] > 0 && data.data[i] > 128 ? 255 : 0;
      out.data[i] = out.data[i + 1] = out.data[i + 2] = on; out.data[i + 3] = 255;
    }
    g.putImageData(out, 0, 0);
    return new Promise(function (resolve) { c.toBlob(resolve, "image/png"); });
  }

  function run() {
    var option = $("inference").selectedOptions[0];
    var inferenceId = Number(option.value), name = option.dataset.name;
    var maskUpload = name === "remove_object" ? maskBlob().then(function (b) { return upload(b, "image/png"); }) : Promise.resolve(null);
    $("job-status").textContent = "submitting…";
    maskUpload.then(function (mask) {
      return api("POST", "/v1/jobs", {
        kind: "restore", input_id: state.inputId, input_key: state.inputKey, input_token: state.inputToken,
        anonymous_id: fs.anonymousId(), inference_id: inferenceId, inference_name: name,
        mask_key: mask ? mask.input_key : undefined, mask_token: mask ? mask.upload_token : undefined,
        experiments: fs.experiments()
      });
    }).then(function (accepted) { log("inference_requested (by the collector) " + accepted.job_id.slice(0, 8)); state.jobId = accepted.job_id; return waitForJob(accepted.job_id); })
      .then(function (job) {
        state.resultUrl = job.result_url;
        $("result").src = job.result_url;
        $("result").style.display = "block";
        $("save").href = job.result_url;
        done("inference");
        unlock("save");
      }).catch(function (e) { $("job-status").textContent = String(e); });
  }

  $("save").addEventListener("click", function (e) {
    // The result lives on the object store's origin, where a download attribute is ignored:
    // fetch it and save a same-origin blob instead.
    e.preventDefault();
    fetch(state.resultUrl).then(function (r) { return r.blob(); }).then(function (blob) {
      var a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "result.png";
      document.body.appendChild(a);
      a.click();
      a.remove();
      track("image_saved", { input_id: state.inputId, job_id: state.jobId });
      done("save");
      unlock("rate");
    }).catch(function (err) { log(String(err)); });
  });

  for (var s = 1; s <= 5; s++) {
    var star = document.createElement("button");
    star.textContent = "★" + s;
    star.dataset.score = String(s);
    star.addEventListener("click", function (e) {
      track("score_submitted", { input_id: state.inputId, job_id: state.jobId, score: Number(e.target.dataset.score) });
      done("rate");
      fs.flush();
    });
    $("stars").appendChild(star);
  }

  $("file").addEventListener("change", function (e) {
    var file = e.target.files[0];
    if (file) useImage(file, file.type);
  });
  $("sample").addEventListener("click", function () { sampleImage().then(function (b) { useImage(b, "image/png"); }); });
  $("run").addEventListener("click", run);
  document.querySelectorAll("[data-tool]").forEach(function (b) { b.addEventListener("click", function () { selectTool(b); }); });

  $("anon").textContent = fs.anonymousId().slice(0, 8);
  api("GET", "/v1/assignments?anonymous_id=" + encodeURIComponent(fs.anonymousId())).then(function (a) {
    var variant = (a.variants || {})[EXPERIMENT] || "control";
    fs.setExperiment(EXPERIMENT, variant);
    $("variant").textContent = variant;
    // Only the treatment arm is offered the Segmentation Tool.
    $("segmentation").hidden = variant !== "treatment";
  }).catch(function (e) { $("variant").textContent = "unassigned"; log(String(e)); });
})();
