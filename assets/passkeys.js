// edge-idp passkeys: the WebAuthn calls of the hosted pages, and nothing else.
//
// Every page works without this script (password, codes, the forms). Where the browser has
// WebAuthn, it shows the passkey forms and fills them: it asks the server for a ceremony's
// options (JSON, WebAuthn's own serialisation), lets the browser run the ceremony, and posts
// the credential (`PublicKeyCredential.toJSON()`) in the form, so the server answers with a
// page as for any other form.
"use strict";

(() => {
  const pkc = window.PublicKeyCredential;
  if (!pkc || !pkc.parseRequestOptionsFromJSON || !pkc.parseCreationOptionsFromJSON) {
    return;
  }

  const say = (form, text) => {
    const out = form.querySelector("[data-passkey-status]");
    if (out) {
      out.textContent = text;
      out.hidden = !text;
    }
  };

  // POSTs `body` (JSON, or a form when `form` is true) and answers the JSON reply.
  const begin = async (url, body, form) => {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": form ? "application/x-www-form-urlencoded" : "application/json" },
      body: form ? new URLSearchParams(body) : JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(answer.detail || "The server refused to start.");
    }
    return answer;
  };

  const finish = (form, begun, credential) => {
    form.elements.ceremony_id.value = begun.ceremony_id;
    form.elements.credential.value = JSON.stringify(credential.toJSON());
    form.submit();
  };

  // Sign-in with a passkey: usernameless, or the second factor of an `mfa_token`.
  for (const form of document.querySelectorAll("form[data-passkey-sign-in]")) {
    form.hidden = false;
    let autofill = null;
    const signIn = async (mediation, signal) => {
      const token = form.elements.mfa_token;
      const begun = await begin("/auth/passkeys/login/begin", token ? { mfa_token: token.value } : {});
      const publicKey = pkc.parseRequestOptionsFromJSON(begun.publicKey);
      const credential = await navigator.credentials.get({ publicKey, mediation, signal });
      if (credential) {
        finish(form, begun, credential);
      }
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (autofill) {
        autofill.abort();
        autofill = null;
      }
      say(form, "");
      signIn(undefined, undefined).catch((e) => {
        say(form, e.name === "NotAllowedError" ? "No passkey was used. Try again, or sign in with your password." : e.message);
      });
    });
    // Passkeys in the email field's autofill, where the browser offers it.
    if (form.dataset.passkeySignIn === "autofill" && pkc.isConditionalMediationAvailable) {
      pkc.isConditionalMediationAvailable().then((available) => {
        if (available) {
          autofill = new AbortController();
          signIn("conditional", autofill.signal).catch(() => {});
        }
      });
    }
  }

  // Adding a passkey on the account page.
  for (const form of document.querySelectorAll("form[data-passkey-register]")) {
    form.hidden = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      say(form, "");
      (async () => {
        const begun = await begin(form.dataset.passkeyRegister, { csrf: form.elements.csrf.value }, true);
        const publicKey = pkc.parseCreationOptionsFromJSON(begun.publicKey);
        const credential = await navigator.credentials.create({ publicKey });
        finish(form, begun, credential);
      })().catch((e) => {
        say(form, e.name === "NotAllowedError" ? "No passkey was created." : e.message);
      });
    });
  }
})();
